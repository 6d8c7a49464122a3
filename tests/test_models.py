"""Plain values: statuses parse leniently and credentials never show their token."""

from __future__ import annotations

import pytest

from runcast.models import Credentials, RunStatus


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("complete", RunStatus.COMPLETE),
        ("waitingForPause", RunStatus.WAITING_FOR_PAUSE),
        ("rollingBack", RunStatus.UNKNOWN),
        ("", RunStatus.UNKNOWN),
        (None, RunStatus.UNKNOWN),
        (3, RunStatus.UNKNOWN),
    ],
)
def test_status_parses_known_values_and_maps_the_rest_to_unknown(
    raw: object, status: RunStatus
) -> None:
    """Every upstream status string parses; anything else is UNKNOWN instead of an error."""
    assert RunStatus.parse(raw) is status


def test_only_errored_terminated_and_complete_are_terminal() -> None:
    """The terminal statuses are exactly errored, terminated and complete."""
    terminal = {status for status in RunStatus if status.is_terminal}
    assert terminal == {RunStatus.ERRORED, RunStatus.TERMINATED, RunStatus.COMPLETE}


@pytest.mark.parametrize(
    ("header", "token", "forwarded"),
    [
        ("Bearer abc", "abc", "Bearer abc"),
        ("bearer  abc ", "abc", "Bearer abc"),
        ("abc", "abc", "Bearer abc"),
        ("Basic dXNlcjpwdw==", "dXNlcjpwdw==", "Basic dXNlcjpwdw=="),
    ],
)
def test_authorization_headers_are_forwarded_with_their_scheme(
    header: str, token: str, forwarded: str
) -> None:
    """A bearer token is forwarded as Bearer; any other scheme is forwarded unchanged."""
    credentials = Credentials.from_authorization(header)
    assert credentials.token == token
    assert credentials.authorization_header() == {"Authorization": forwarded}


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_authorization_is_anonymous(header: str | None) -> None:
    """A missing or blank header gives anonymous credentials that send no header."""
    credentials = Credentials.from_authorization(header)
    assert credentials.token is None
    assert credentials.fingerprint == "anonymous"
    assert credentials.authorization_header() == {}


def test_credentials_hide_the_token_and_fingerprint_by_scheme() -> None:
    """The token is not in the repr, and the same token under another scheme is another tenant."""
    bearer = Credentials.from_authorization("Bearer s3cret")
    basic = Credentials.from_authorization("Basic s3cret")
    assert "s3cret" not in repr(bearer)
    assert "s3cret" not in bearer.fingerprint
    assert bearer.fingerprint != basic.fingerprint
    assert bearer.fingerprint == Credentials("s3cret").fingerprint

"""Cluster-mode settings: where they come from and what ``runcast serve`` refuses."""

from __future__ import annotations

import pytest

from runcast.cli import main
from runcast.live.cluster import EMBEDDED_REFUSAL
from runcast.settings import Settings


def test_redis_url_and_secret_come_from_the_environment() -> None:
    """RUNCAST_REDIS_URL and RUNCAST_CLUSTER_SECRET set cluster mode; repr shows neither."""
    settings = Settings.from_env(
        {
            "RUNCAST_REDIS_URL": "redis://:hunter2@redis:6379/0",
            "RUNCAST_CLUSTER_SECRET": "s3cret-value",
            "RUNCAST_CLUSTER_LEASE_SECONDS": "2.5",
        }
    )
    assert settings.redis_url == "redis://:hunter2@redis:6379/0"
    assert settings.cluster_secret == "s3cret-value"
    assert settings.cluster_lease_seconds == 2.5
    assert "hunter2" not in repr(settings)
    assert "s3cret" not in repr(settings)
    assert Settings.from_env({}).redis_url is None


def test_redis_with_the_embedded_engine_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``serve --redis`` with the embedded engine exits 2, one line naming ``runcast engine``."""
    assert main(["serve", "--redis", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert err == f"runcast: {EMBEDDED_REFUSAL}\n"
    assert "runcast engine" in err


def test_redis_without_a_cluster_secret_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cluster mode needs the shared secret that keys credential fingerprints."""
    monkeypatch.delenv("RUNCAST_CLUSTER_SECRET", raising=False)
    code = main(["serve", "--upstream", "http://127.0.0.1:1", "--redis", "redis://127.0.0.1:1/0"])
    assert code == 2
    assert "RUNCAST_CLUSTER_SECRET" in capsys.readouterr().err

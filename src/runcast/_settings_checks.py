"""The start-up check of the gateway's settings, before anything is opened or bound."""

from __future__ import annotations

from runcast._host_guard import HostPolicy
from runcast.errors import ConfigurationError, RuncastError
from runcast.logs import parse_log_format, parse_log_level
from runcast.settings import Settings
from runcast.upstream.factory import check_upstream


def check_settings(settings: Settings) -> None:
    """Refuse settings that cannot work, before anything is opened.

    Raises:
        ConfigurationError: unknown upstream scheme, missing Cloudflare account,
            an unreadable workflows folder, or an allowed host that is not a name.
        BadUserInput: an unknown log format or level.
    """
    HostPolicy(settings.allowed_hosts, bind_host=settings.host)
    parse_log_format(settings.log_format)
    parse_log_level(settings.log_level)
    check_upstream(settings)


def check_trusted_documents(settings: Settings) -> None:
    """Read the trusted-documents manifest (if one is set) once, to refuse a bad one at start.

    Raises:
        ConfigurationError: the manifest cannot be read or is not a manifest.
    """
    if settings.trusted_documents is None:
        return
    from runcast.trusted_documents import load_trusted_documents

    try:
        load_trusted_documents(settings.trusted_documents)
    except RuncastError as exc:
        raise ConfigurationError(exc.message) from exc

"""Settings are checked at start-up: ranges, unknown variables, and the README's table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runcast.errors import BadUserInput
from runcast.settings import SETTING_RANGES, Settings, settings_reference, unknown_variables

README = Path(__file__).parent.parent / "README.md"
RUNCAST = [sys.executable, "-m", "runcast"]


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``runcast serve`` with only ``env``'s RUNCAST_* variables; it must end within 60 s."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    return subprocess.run(
        [*RUNCAST, "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"RUNCAST_MAX_RUNNING": "0"}, "max_running=0 (RUNCAST_MAX_RUNNING)"),
        ([], {"RUNCAST_MAX_BODY_BYTES": "-5"}, "from 1_024 to"),
        (["--port", "99999"], {}, "port=99999 (RUNCAST_PORT) is out of range"),
        (["--port", "-1"], {}, "it must be from 0 to 65_535"),
        ([], {"RUNCAST_OPERATION_TIMEOUT": "0"}, "above 0"),
        ([], {"RUNCAST_POLL_MIN_INTERVAL": "5", "RUNCAST_POLL_MAX_INTERVAL": "2"}, "at least"),
        ([], {"RUNCAST_UPSTREAM_READ_TIMEOUT": "nan"}, "upstream_read_timeout"),
    ],
)
def test_out_of_range_settings_exit_2_with_one_line(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    """A setting out of its range is one line on stderr naming it and the range, exit code 2."""
    result = run_serve(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("runcast: setting ")
    assert needle in lines[0]


def test_an_unknown_variable_warns_with_the_closest_name() -> None:
    """A misspelt RUNCAST_PROT is reported with RUNCAST_PORT suggested (a bad port then stops)."""
    result = run_serve("--port", "99999", env={"RUNCAST_PROT": "9000"})
    assert "warning: RUNCAST_PROT is not a runcast setting" in result.stderr
    assert "did you mean RUNCAST_PORT?" in result.stderr


def test_unknown_variables_names_only_variables_that_are_no_setting() -> None:
    """Known settings and other programs' variables are not reported; far-off names get no hint."""
    warnings = unknown_variables({"RUNCAST_PORT": "1", "HOME": "/", "RUNCAST_ZZZ": "1"})
    assert warnings == ["RUNCAST_ZZZ is not a runcast setting and is ignored"]


def test_the_defaults_pass_and_every_range_names_a_real_setting() -> None:
    """Default settings are in range, and every range belongs to an existing numeric setting."""
    assert Settings().check() == Settings()
    names = set(Settings.__dataclass_fields__)
    assert set(SETTING_RANGES) <= names


@pytest.mark.parametrize("value", [True, float("inf"), "7"])
def test_values_that_are_not_finite_numbers_are_refused(value: object) -> None:
    """A bool, an infinite number or a string is out of any numeric range."""
    with pytest.raises(BadUserInput, match="max_query_depth"):
        Settings().replace(max_query_depth=value).check()


def test_readme_settings_table_is_generated_from_the_code() -> None:
    """README's Settings table is exactly what `runcast settings` prints."""
    text = README.read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert found is not None
    assert found.group(1) == settings_reference(), (
        "regenerate README's table with: python3 -m runcast settings"
    )
    printed = subprocess.run(
        [*RUNCAST, "settings"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert printed.strip() == settings_reference()

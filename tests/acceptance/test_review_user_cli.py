"""The ``workflows`` command as a user meets it: regression tests for bugs found in review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET_URL = "postgresql://u:hunter22@127.0.0.1:1/db"


def workflows(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WORKFLOWS_LOG_JSON")}
    return subprocess.run(
        [sys.executable, "-m", "workflows_tick", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["list"], ["run", "d"]])
def test_a_failing_config_never_prints_a_password(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "config.py").write_text(
        "import os\nraise RuntimeError('cannot reach ' + os.environ['DATABASE_URL'])\n"
    )
    result = workflows("config.py", *command, cwd=tmp_path, env={"DATABASE_URL": SECRET_URL})
    assert result.returncode == 2
    assert result.stderr.startswith("workflows: config.py: importing the config failed")
    assert "hunter22" not in result.stderr


def test_a_failing_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("raise RuntimeError('first\\nsecond')\n")
    result = workflows("config.py", "list", cwd=tmp_path, env={})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr

"""Regression test: a trigger parameter the database cannot store is one line
that never echoes the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import write_project


def test_trigger_with_a_non_utf8_parameter_value_is_one_line_and_hides_the_value(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    write_project(tmp_path, {"d": {"workflow.yaml": "description: x\n", "a.yaml": "type: no_op\n"}})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflows_tick",
            str(tmp_path / "config.py"),
            "trigger",
            "d",
            "-p",
            b"TOKEN=s3cret\xff",
        ],
        env=subprocess_env,
        capture_output=True,
        timeout=60,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert "s3cret" not in stderr

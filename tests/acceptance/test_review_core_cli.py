"""Adversarial review of the ``workflows`` command: each test shows a confirmed bug.

Every test is ``xfail(strict=True)``: it fails today because of the bug named in
its reason, and starts passing once the bug is fixed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import write_project


@pytest.mark.xfail(
    strict=True,
    reason="trigger passes a non-UTF-8 -p value (a lone surrogate) to jsonb: the command "
    "dies with a traceback that prints the parameter's value, instead of one line, exit 2",
)
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

"""Tying a task process's life to the scheduler that started it (Linux).

The worker manager sets ``WORKFLOWS_SCHEDULER_PID`` in the environment of each
``workflows <config> run`` it starts; that process then asks the kernel for
SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). A scheduler killed with
SIGKILL (or a lost machine) so leaves no attempt running beside the retry that
follows its expired lease. Doing this in the child, not in a ``preexec_fn``,
keeps the scheduler's fast ``vfork`` spawn path.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

SCHEDULER_PID = "WORKFLOWS_SCHEDULER_PID"
_PR_SET_PDEATHSIG = 1
_libc: Any = None
"""The C library, opened once (a forked attempt finds it open)."""


def die_with_scheduler(environ: Mapping[str, str]) -> None:
    """Get SIGTERM when the scheduler named in ``environ`` dies; exit now if it has."""
    value = environ.get(SCHEDULER_PID)
    if not value or not value.isdigit() or not sys.platform.startswith("linux"):
        return
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return
    if os.getppid() != int(value):  # the scheduler died before prctl took effect
        print("workflows: the scheduler that started this task is gone", file=sys.stderr)
        sys.exit(1)

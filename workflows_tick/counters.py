"""This process's counters (passes, launch failures, ...), for ``/metrics``.

Plain integers behind a lock: counting must not import the metrics library.
"""

from __future__ import annotations

import threading

NAMES = {
    "passes": "Passes this process completed.",
    "failed_passes": "Passes this process started that failed.",
    "launch_failures": "Task runs this process could not start.",
    "expired_leases": "Task runs this process failed because their lease ran out.",
    "hook_failures": "Calls of an event hook that raised or timed out.",
    "integration_failures": "Deliveries of an event to an integration (Cronitor) that failed.",
}


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def values(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


COUNTERS = Counters()

"""What the scheduler heartbeat costs an idle pass: passes with and without it, interleaved.

One process, one database, one ``Ticker`` per size (5 and 500 scheduled DAGs, nothing
due, nothing running); even passes record the heartbeat as the scheduler does, odd
passes have ``queries.record_heartbeat`` replaced by a no-op. Interleaving makes the
ratio robust to a machine whose load changes during the run. ``--every-pass`` makes
every idle pass write the heartbeat (``HEARTBEAT_SECONDS = 0``), to show what the
once-a-second limit saves (an idle pass otherwise commits without a WAL flush).

    python benchmarks/heartbeat_cost.py [--passes 1200] [--every-pass]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import add_database_option, bench_database, engine_for, header, scheduled_dags

from workflows_tick import queries, tick
from workflows_tick.testing import FakeClock, InstantManager, write_project
from workflows_tick.tick import Ticker

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--passes", type=int, default=1200, help="timed passes per size")
    parser.add_argument("--every-pass", action="store_true", help="no once-a-second limit")
    args = parser.parse_args()
    if args.every_pass:
        tick.HEARTBEAT_SECONDS = 0.0
    real = queries.record_heartbeat

    def skip(*args: Any, **kwargs: Any) -> None:
        return None

    with bench_database(args.database_url, "heartbeat") as db, tempfile.TemporaryDirectory() as tmp:
        header("Heartbeat cost", db)
        engine = engine_for(db)
        try:
            for size in (5, 500):
                registry = write_project(Path(tmp) / f"dags_{size}", scheduled_dags(size))
                ticker = Ticker(
                    registry, InstantManager(), engine, "config.py", clock=FakeClock(NOW)
                )
                for _ in range(20):  # cursors, pool, caches, plans
                    ticker.run_pass()
                timed: dict[bool, list[float]] = {True: [], False: []}
                for i in range(args.passes):
                    beat = i % 2 == 0
                    queries.record_heartbeat = real if beat else skip  # type: ignore[assignment]
                    started = time.perf_counter()
                    ticker.run_pass()
                    timed[beat].append(time.perf_counter() - started)
                queries.record_heartbeat = real  # type: ignore[assignment]
                with_beat, without = (statistics.median(timed[b]) for b in (True, False))
                print(
                    f"{size} DAGs: median idle pass {with_beat * 1000:.2f} ms with the heartbeat, "
                    f"{without * 1000:.2f} ms without: ratio {with_beat / without:.3f}"
                )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()

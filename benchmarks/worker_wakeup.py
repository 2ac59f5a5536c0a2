"""Wake-up latency of the worker manager: from a child's exit to ``wait()`` returning.

The scheduler loop sleeps in ``WorkerTaskManager.wait()`` while tasks run; it must
wake as soon as one exits so that the next task starts at once. Starts ``--runs``
children one at a time, each ``python -c`` that sleeps ``--sleep`` seconds, writes
``time.time()`` to a file and exits; the latency is the time at which ``wait()``
returned minus that stamp. Target: median < 50 ms.

    python benchmarks/worker_wakeup.py [--runs 30] [--sleep 0.2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from workflows_tick.managers.base import Launch
from workflows_tick.managers.worker import WorkerTaskManager
from workflows_tick.model import Dag, Task, TaskType


def launch(task_run_id: int, body: str) -> Launch:
    task = Task(name="t.py", type=TaskType.PYTHON, path=Path("t.py"), body=body)
    dag = Dag(name="d", path=Path("d"), description="", tasks={task.name: task})
    return Launch(
        task_run_id=task_run_id,
        dag_run_id=task_run_id,
        attempt=1,
        dag=dag,
        task=task,
        config="config.py",
        parameters={},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--sleep", type=float, default=0.2)
    args = parser.parse_args()

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        manager = WorkerTaskManager(
            log_dir=Path(folder), command=lambda launch: [sys.executable, "-c", launch.task.body]
        )
        try:
            for run in range(1, args.runs + 1):
                stamp = Path(folder) / f"exit-{run}"
                body = (
                    f"import os, time\ntime.sleep({args.sleep})\n"
                    f"open({str(stamp)!r}, 'w').write(repr(time.time()))\nos._exit(0)\n"
                )
                manager.start(launch(run, body))
                if not manager.wait(60.0):
                    raise SystemExit(f"run {run}: wait() slept its whole timeout")
                woke = time.time()
                latencies.append(woke - float(stamp.read_text()))
                manager.poll([])
        finally:
            manager.shutdown(kill=True)

    ms = sorted(latency * 1000 for latency in latencies)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, {args.runs} runs"
    )
    print(
        f"wake-up latency (ms): median {statistics.median(ms):.1f}, "
        f"p90 {ms[int(len(ms) * 0.9) - 1]:.1f}, max {ms[-1]:.1f}"
    )


if __name__ == "__main__":
    main()

"""Task start-up cost: ``workflows <config> run <dag> -o <no_op task>`` vs ``python -c pass``.

The scheduler starts this command once per task, so its fixed cost is paid by every
task run. Prints the median wall time of each over N runs and their ratio.

    python benchmarks/startup.py [--runs 30] [--dag hello] [--task begin.yaml]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # An installed package has compiled .pyc files. Let the untimed warm-up run
    # write them, as a normal install would, even where PYTHONDONTWRITEBYTECODE is set.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def wall_time(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def measure(commands: list[list[str]], runs: int) -> list[list[float]]:
    """Wall times of each command, interleaved so that load on the machine hits all alike."""
    env = environment()
    for command in commands:  # warm the page cache and write .pyc files, untimed
        wall_time(command, env)
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for index, command in enumerate(commands):
            times[index].append(wall_time(command, env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--config", default=str(REPO / "examples" / "config.py"))
    parser.add_argument("--dag", default="hello")
    parser.add_argument("--task", default="begin.yaml")
    args = parser.parse_args()

    baseline_cmd = [sys.executable, "-c", "pass"]
    run_cmd = [
        sys.executable,
        "-m",
        "workflows_tick",
        args.config,
        "run",
        args.dag,
        "-o",
        args.task,
    ]
    baseline, task = measure([baseline_cmd, run_cmd], args.runs)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, {args.runs} runs each "
        "(interleaved)"
    )
    label = f"workflows run {args.dag} -o {args.task}"
    for name, times in (("python -c pass", baseline), (label, task)):
        print(
            f"{name:<36} median {statistics.median(times) * 1000:6.1f} ms"
            f"   min {min(times) * 1000:6.1f} ms"
        )
    ratio = statistics.median(task) / statistics.median(baseline)
    print(
        f"{'ratio of medians':<36} {ratio:6.2f}x   (of minimums {min(task) / min(baseline):.2f}x)"
    )


if __name__ == "__main__":
    main()

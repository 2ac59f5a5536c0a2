"""What a one-shot pass with nothing to do costs: ``schedule ... --once`` against ``list``.

Times, interleaved, ``--runs`` times each after one untimed round: ``python -c
pass``, ``workflows CONFIG list``, ``workflows CONFIG schedule worker --once`` and
``workflows CONFIG schedule kubernetes --once`` (the real client, with
``--kubeconfig``: a cluster or an emulator with no pods of ours; or, with
``--stub-kubernetes``, a minimal API server in this process that answers the pod
LISTs of an idle pass with no pods), on a migrated database with DAGs scheduled at
03:00 (nothing due, nothing running). Then prints where the slowest pass's imports
go (``python -X importtime``, cumulative, top-level packages).

    python benchmarks/once.py [--runs 10] [--kubeconfig PATH | --stub-kubernetes]
        [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from _common import (
    add_database_option,
    bench_database,
    header,
    median,
    ms,
    scheduled_dags,
    subprocess_env,
    workflows_command,
)

CONFIG = (
    "import os\nfrom workflows_tick import dags\n"
    "DAGS = dags.register_directory(os.path.dirname(__file__))\n"
)


class _EmptyPodList(BaseHTTPRequestHandler):
    """Answers ``GET /api/v1/namespaces/NS/pods`` with no pods; 404 for anything else."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["pods"]:
            status, body = 200, {"kind": "PodList", "apiVersion": "v1", "items": []}
            body["metadata"] = {"resourceVersion": "1"}
        else:
            status, body = 404, {"kind": "Status", "status": "Failure", "code": 404}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def stub_kubernetes(folder: Path) -> Iterator[Path]:
    """An HTTPS API server on 127.0.0.1 (a self-signed certificate) that lists no
    pods, in a thread of this process; yields a kubeconfig for it."""
    cert, key = folder / "stub.crt", folder / "stub.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyPodList)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "stub",
                        "cluster": {
                            "server": f"https://127.0.0.1:{server.server_address[1]}",
                            "certificate-authority": str(cert),
                        },
                    }
                ],
                "users": [{"name": "stub", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def import_breakdown(command: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    top: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if not cumulative.isdigit() or name.startswith(" ") or "." in name.strip():
            continue
        top[name.strip()] = max(top.get(name.strip(), 0.0), int(cumulative) / 1e6)
    return sorted(top.items(), key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--stub-kubernetes", action="store_true")
    add_database_option(parser)
    args = parser.parse_args()
    with (
        bench_database(args.database_url, "once") as db,
        tempfile.TemporaryDirectory() as folder,
        contextlib.ExitStack() as stack,
    ):
        root = Path(folder)
        if args.stub_kubernetes:
            args.kubeconfig = stack.enter_context(stub_kubernetes(root))
        for name, files in scheduled_dags(20).items():
            (root / name).mkdir()
            for file, text in files.items():
                (root / name / file).write_text(text)
        config = root / "config.py"
        config.write_text(CONFIG)
        env = subprocess_env(db)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "list": workflows_command(config, "list"),
            "schedule worker --once": workflows_command(config, "schedule", "worker", "--once"),
        }
        if args.kubeconfig:
            env["KUBECONFIG"] = str(args.kubeconfig)
            commands["schedule kubernetes --once"] = workflows_command(
                config, "schedule", "kubernetes", "--once"
            )
        header("one-shot pass with nothing to do", db)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(args.runs + 1):
            for name, command in commands.items():
                elapsed = timed(command, env)
                if round_:
                    times[name].append(elapsed)
        print(f"\n| command | median of {args.runs} | min | / list |")
        print("| --- | --- | --- | --- |")
        base = median(times["list"])
        for name, values in times.items():
            print(
                f"| `{name}` | {ms(median(values))} | {ms(min(values))} "
                f"| {median(values) / base:.2f} |"
            )
        slowest = list(commands)[-1]
        print(f"\nimports of `{slowest}` (cumulative, -X importtime):")
        for name, seconds in import_breakdown(commands[slowest], env)[:12]:
            print(f"  {name}: {ms(seconds)}")
        if args.stub_kubernetes:
            lists = len(_EmptyPodList.requests) / (args.runs + 2)
            print(f"requests to the stub API server per kubernetes pass: {lists:g} (pod LISTs)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

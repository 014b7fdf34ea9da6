"""Decisions over HTTP on loopback: `POST /v1/decisions` against one `tollgate serve` process.

Prints one JSON object per figure on stdout (shared BENCH conventions); notes go to stderr.

  http.decide          decisions/s, median of --runs timed runs after a warm-up
  http.decide.p50_ms   per-request latency (send to last byte of the response) under that load,
  http.decide.p99_ms   pooled over the timed runs

How it runs. The script starts the server itself, `python -m ledger.api --db URL --port P`
(the same `serve()` as `tollgate serve`: uvicorn, one process, the settlement worker as an
asyncio task), on a free 127.0.0.1 port, with a bootstrap admin key in $TOLLGATE_ADMIN_KEY. It
publishes a plan whose feature has two windows (5h and 7d, limits far above the load) then
credits, a price book, --customers customers and a service key, all over HTTP. The client is
one asyncio process holding --concurrency keep-alive connections, each sending one request at a
time (a hand-written HTTP/1.1 client: httpx costs about 1 ms of client CPU per request here,
which would measure the client, not the server). Request i is customer i % customers, feature
"chat", 1 unit, a fresh idempotency key, so every decision is new and allowed by the windows:
the windows-only path, which writes the decision record (one SQLite transaction with
synchronous=FULL on the default store). Every response is checked: status 200, allowed.

The machine has 2 cores: the client process competes with the server for them, and the figure
is for server and client together (params say so).

    python bench/http.py [--db sqlite|memory|both|postgres|URL] [--decisions 20000]
                         [--warm-up 3000] [--runs 3] [--concurrency 32] [--customers 1000]
                         [--quick]

`--db sqlite` (the default) is a fresh file in a temporary folder; `--db memory` is memory://.
With `--db both` it measures SQLite then memory://. `--db postgres` is a database on a throwaway
PostgreSQL cluster the script starts as the tests start theirs (initdb/pg_ctl on a free
loopback port, fsync and synchronous_commit on); the server keeps its windows in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# This file is named http.py: drop its folder from the import path before anything imports the
# standard library's `http` package (httpx, imported below where it is used), or this file
# would stand in for it. Nothing imported above needs `http`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

ROOT = Path(__file__).resolve().parent.parent
FEATURE = "chat"
PLAN = {
    "plan": "bench",
    "version": 1,
    "features": {
        FEATURE: {
            "layers": [
                {
                    "kind": "windows",
                    "windows": [
                        {"name": "5h", "length": "5h", "limit": 10**9},
                        {"name": "7d", "length": "7d", "limit": 10**10},
                    ],
                },
                {"kind": "credits"},
            ]
        }
    },
}
PRICES = {"version": 1, "effective_from": 0, "prices": {FEATURE: 1000}}


def note(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_stack() -> dict[str, str]:
    """What uvicorn picks with http="auto", loop="auto" here."""
    import importlib.util

    def has(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    return {
        "http": "httptools" if has("httptools") else "h11",
        "loop": "uvloop" if has("uvloop") else "asyncio",
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_server(db_url: str, admin_key: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ, TOLLGATE_ADMIN_KEY=admin_key)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "ledger.api", "--db", db_url, "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--log-level", "warning"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 30 s")


def set_up(base: str, admin_key: str, customers: int) -> str:
    """Plan, prices, customers and a service key, over HTTP; returns the service key."""
    import httpx

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin_key}"}) as c:
        for path, body in (("/v1/plans", PLAN), ("/v1/price-books", PRICES)):
            c.post(path, json=body).raise_for_status()
        for i in range(customers):
            c.post("/v1/customers", json={"customer": f"c{i}", "plan": "bench"}).raise_for_status()
        response = c.post("/v1/keys", json={"role": "service"})
        response.raise_for_status()
        key: str = response.json()["key"]
        return key


def request_bytes(port: int, key: str, customer: str, idempotency_key: str) -> bytes:
    body = json.dumps(
        {"customer": customer, "feature": FEATURE, "units": 1, "idempotency_key": idempotency_key},
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def load(
    base: str, key: str, first: int, count: int, customers: int, concurrency: int, tag: str
) -> tuple[float, list[int]]:
    """Send decisions first..first+count over `concurrency` connections; (seconds, latencies)."""
    port = int(base.rsplit(":", 1)[1])
    requests = [
        request_bytes(port, key, f"c{i % customers}", f"{tag}-{i}")
        for i in range(first, first + count)
    ]
    latencies: list[int] = []
    next_index = 0
    failures: list[str] = []

    async def connection() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while next_index < count and not failures:
                request = requests[next_index]
                next_index += 1
                started = time.perf_counter_ns()
                writer.write(request)
                status, body = await read_response(reader)
                latencies.append(time.perf_counter_ns() - started)
                if status != 200 or b'"allowed":true' not in body:
                    failures.append(f"{status} {body[:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"a decision failed: {failures[0]}")
    return seconds, latencies


def percentile(sorted_values: list[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6


def measure(db_url: str, label: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    admin_key = "tg_" + secrets.token_urlsafe(32)
    with running_server(db_url, admin_key) as (base, pid):
        key = set_up(base, admin_key, args.customers)
        tag = secrets.token_hex(4)
        asyncio.run(load(base, key, 0, args.warm_up, args.customers, args.concurrency, tag))
        rates: list[float] = []
        latencies: list[int] = []
        server_cpu: list[float] = []
        client_cpu: list[float] = []
        first = args.warm_up
        for run in range(args.runs):
            cpu_before, own_before = cpu_seconds(pid), time.process_time()
            seconds, run_latencies = asyncio.run(
                load(base, key, first, args.decisions, args.customers, args.concurrency, tag)
            )
            server_cpu.append((cpu_seconds(pid) - cpu_before) / args.decisions * 1e6)
            client_cpu.append((time.process_time() - own_before) / args.decisions * 1e6)
            first += args.decisions
            rates.append(args.decisions / seconds)
            latencies += run_latencies
            note(
                f"{label} run {run + 1}: {rates[-1]:,.0f} decisions/s; CPU per decision: "
                f"server {server_cpu[-1]:.0f} us, client {client_cpu[-1]:.0f} us"
            )
    latencies.sort()
    params = {
        "store": label,
        "db": {
            "memory": db_url,
            "sqlite": "sqlite (fresh file, WAL, synchronous=FULL)",
            "postgres": "postgresql (throwaway cluster started by the script, loopback, fsync on)",
        }.get(label, label),
        "decisions_per_run": args.decisions,
        "runs": [round(r, 1) for r in rates],
        "warm_up": args.warm_up,
        "concurrency": args.concurrency,
        "customers": args.customers,
        "server_cpu_us_per_decision": round(statistics.median(server_cpu), 1),
        "client_cpu_us_per_decision": round(statistics.median(client_cpu), 1),
        "path": "windows-only (every decision new and allowed by the windows)",
        "server": "python -m ledger.api (serve(): uvicorn, one process), started by this script",
        "uvicorn": server_stack(),
        "client": "one asyncio process, raw HTTP/1.1 keep-alive, one request in flight per "
        "connection",
        "machine": f"{os.cpu_count()} cores, client and server share them; "
        f"Python {platform.python_version()}",
    }
    return [
        {"name": "http.decide", "value": round(statistics.median(rates), 1),
         "unit": "decisions/s", "params": params},
        {"name": "http.decide.p50_ms", "value": round(percentile(latencies, 0.50), 3),
         "unit": "ms", "params": {"store": label, "concurrency": args.concurrency}},
        {"name": "http.decide.p99_ms", "value": round(percentile(latencies, 0.99), 3),
         "unit": "ms", "params": {"store": label, "concurrency": args.concurrency}},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--warm-up", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.decisions, args.warm_up, args.customers, args.runs = 1_000, 200, 50, 1
    targets: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="tollgate-http-") as folder,
        contextlib.ExitStack() as stack,
    ):
        sqlite_url = f"sqlite:///{Path(folder) / 'bench.db'}"
        if args.db in ("sqlite", "both"):
            targets.append((sqlite_url, "sqlite"))
        if args.db in ("memory", "both"):
            targets.append(("memory://", "memory"))
        if args.db == "postgres":
            sys.path.insert(0, str(ROOT))  # the tests' cluster helper
            from tests.store.postgres_cluster import running_cluster

            cluster = stack.enter_context(running_cluster())
            targets.append((cluster.create_database("http_bench"), "postgres"))
        if not targets:
            targets.append((args.db, args.db.split(":", 1)[0]))
        for url, label in targets:
            for figure in measure(url, label, args):
                print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

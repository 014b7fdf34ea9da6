"""End to end over real HTTP: `serve()` started in a subprocess (`python -m ledger.api`, what
`tollgate serve` runs) on a free loopback port, driven with httpx through a whole flow (plan,
price book, customers, grant, purchases, keys, decisions, completion, usage, settlement by the
server's background worker, balances, history, audit, metrics), checking every number.

Once on SQLite with windows in the server's memory, once on PostgreSQL with Redis windows
(a throwaway cluster and redis-server on loopback; skipped where their binaries are missing,
failed under CI=true). And a server on SQLite killed with SIGKILL: restarted, its memory windows
still count what was taken before. And which servers may serve one database together: one with
memory windows alone, any number sharing Redis.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.api import create_key
from tests.metering.redis_server import ServerUnavailable, running_server
from tests.metering.redis_server import skip_or_fail as skip_or_fail_redis
from tests.store.postgres_cluster import cluster_for_tests, free_port

from .helpers import DAY_NS, FEATURE, PLAN, PRICE, PRICES, bearer

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


def _server_command(
    db_url: str, redis_url: str | None, port: int
) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "ledger.api", "--db", db_url, "--port", str(port)]
    argv += ["--settle-interval", "0.1", "--log-level", "warning"]
    if redis_url:
        argv += ["--redis", redis_url]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TOLLGATE_ADMIN_KEY", None)
    return argv, env


@contextlib.contextmanager
def served(
    db_url: str, redis_url: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The server in a subprocess; yields its base URL once /readyz answers 200."""
    port = free_port()
    argv, env = _server_command(db_url, redis_url, port)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stderr=log)
        process.log = log  # type: ignore[attr-defined]
        stack.callback(_end, process)
        yield _ready(f"http://127.0.0.1:{port}", process), process


def _ready(base: str, process: subprocess.Popen[bytes]) -> str:
    """`base` once the server's /readyz answers 200."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return base
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.1)


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text `text` (0.0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def by_layer(items: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    return {p["layer"]: (p["units"], p["amount"]) for p in items}


class Flow:
    """One client per role against the served API."""

    def __init__(self, base: str, admin_key: str) -> None:
        self.base = base
        self.admin = httpx.Client(base_url=base, headers=bearer(admin_key), timeout=30)

    def key(self, role: str, customer: str | None = None) -> httpx.Client:
        made = self.admin.post("/v1/keys", json={"role": role, "customer": customer})
        assert made.status_code == 200, made.text
        return httpx.Client(base_url=self.base, headers=bearer(made.json()["key"]), timeout=30)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def set_up(flow: Flow) -> None:
    admin = flow.admin
    assert ok(admin.post("/v1/plans", json=PLAN))["version"] == 1
    assert ok(admin.post("/v1/price-books", json=PRICES))["prices"] == {FEATURE: 1000}
    assert [p["plan"] for p in ok(admin.get("/v1/plans"))["plans"]] == ["pro"]
    assert [b["version"] for b in ok(admin.get("/v1/price-books"))["price_books"]] == [1]
    for name in ("alice", "bob"):
        assert (
            ok(admin.post("/v1/customers", json={"customer": name, "plan": "pro"}))["org"] is None
        )
    expires = time.time_ns() + DAY_NS
    grant = {"grant": "welcome", "amount": 50_000, "expires_at": expires}
    made = ok(admin.post("/v1/customers/alice/grants", json=grant))
    assert (made["amount"], made["expires_at"], made["features"]) == (50_000, expires, None)
    bought = ok(admin.post("/v1/customers/alice/purchases",
                           json={"purchase_id": "p1", "amount": 200_000}))  # fmt: skip
    assert bought["available"] == 200_000
    bought = ok(admin.post("/v1/customers/bob/purchases",
                           json={"purchase_id": "b1", "amount": 10_000}))  # fmt: skip
    assert bought["available"] == 10_000


def decide(client: httpx.Client, customer: str, units: int, key: str) -> Any:
    body = {"customer": customer, "feature": FEATURE, "units": units, "idempotency_key": key}
    return ok(client.post("/v1/decisions", json=body))


def decisions_and_completions(flow: Flow, service: httpx.Client, alice: httpx.Client) -> str:
    """Returns k3's decision id (its usage is reported later)."""
    k1 = decide(service, "alice", 100, "k1")
    assert (k1["allowed"], by_layer(k1["parts"]), k1["cost"]) == (True, {"windows": (100, 0)}, 0)
    assert k1["parts"][0]["reservation_id"] is None
    assert decide(service, "alice", 100, "k1") == k1  # a replay
    changed = {"customer": "alice", "feature": FEATURE, "units": 99, "idempotency_key": "k1"}
    conflict = service.post("/v1/decisions", json=changed)
    assert (conflict.status_code, conflict.json()["error"]["field"]) == (409, "units")
    k2 = decide(service, "alice", 80, "k2")
    assert by_layer(k2["parts"]) == {"grant:welcome": (50, 50_000), "credits": (30, 30_000)}
    assert k2["cost"] == 80_000
    assert all(p["reservation_id"] for p in k2["parts"])
    assert ok(alice.get("/v1/customers/alice/balances"))["balances"] == {
        "credits": 170_000,
        "grant:welcome": 0,
    }
    done = ok(service.post(f"/v1/decisions/{k2['decision_id']}/complete",
                           json={"actual_units": 70}))  # fmt: skip
    assert by_layer(done["charges"]) == {"grant:welcome": (50, 50_000), "credits": (20, 20_000)}
    assert (done["charged"], done["released_units"], done["released_amount"]) == (
        70_000,
        10,
        10_000,
    )
    assert done["written_off"] == 0
    assert ok(service.get("/v1/customers/alice/balances"))["total"] == 180_000
    k3 = decide(service, "alice", 40, "k3")
    assert (by_layer(k3["parts"]), k3["cost"]) == ({"credits": (40, 40_000)}, 40_000)
    k4 = decide(service, "alice", 1000, "k4")  # more than anything covers
    assert (k4["allowed"], k4["parts"], k4["cost"]) == (False, [], 0)
    codes = {r["code"] for r in k4["reasons"]}
    assert {"exceeds_window_limit", "insufficient_funds"} <= codes
    assert [(u["action"], u["amount"]) for u in k4["unblock"]] == [("buy_credits", 860_000)]
    assert ok(service.get("/v1/customers/alice/balances"))["balances"]["credits"] == 140_000
    # bob: windows first, then credits that the actual overshoots: 5 units written off
    assert by_layer(decide(service, "bob", 100, "b0")["parts"]) == {"windows": (100, 0)}
    b1 = decide(service, "bob", 10, "b1")
    assert by_layer(b1["parts"]) == {"credits": (10, 10_000)}
    over = ok(service.post(f"/v1/decisions/{b1['decision_id']}/complete",
                           json={"actual_units": 15}))  # fmt: skip
    assert (over["charged"], over["written_off"]) == (10_000, 5_000)
    assert by_layer(over["charges"]) == {"credits": (10, 10_000), "write_off": (5, 5_000)}
    return str(k3["decision_id"])


def usage_and_settlement(flow: Flow, service: httpx.Client, k3: str) -> None:
    event = {"customer": "alice", "feature": FEATURE, "units": 45, "key": "u3",
             "decision_id": k3, "occurred_at": time.time_ns()}  # fmt: skip
    stray = {**event, "key": "u-stray", "decision_id": "777"}
    out = ok(service.post("/v1/usage", json={"events": [event, event, stray]}))
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (1, 1, 1)
    assert out["results"][2]["error"]["code"] == "unknown_decision"
    deadline = time.monotonic() + 20
    while ok(flow.admin.get("/v1/settlement"))["backlog"]:  # the server's worker settles it
        assert time.monotonic() < deadline, "the settlement worker did not settle the usage"
        time.sleep(0.1)
    backlog = ok(flow.admin.get("/v1/settlement"))
    assert (backlog["oldest_unsettled_at"], backlog["lag_ns"]) == (None, 0)


def history_checks(alice: httpx.Client) -> None:
    whole = ok(alice.get("/v1/customers/alice/history", params={"limit": 1000}))
    assert whole["next_cursor"] is None
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = ok(alice.get("/v1/customers/alice/history", params=params))
        assert len(page["entries"]) <= 2
        paged += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole["entries"]
    entries = whole["entries"]
    assert [e["timestamp"] for e in entries] == sorted(e["timestamp"] for e in entries)
    for account, final in (("credits", 135_000), ("grant:welcome", 0)):
        mine = [e for e in entries if e["account"] == account]
        assert mine[0]["change"] == mine[0]["available"]
        assert mine[-1]["available"] == final
        assert sum(e["change"] for e in mine) == final
        for e in mine:
            assert e["available"] == e["credits_posted"] - e["debits_posted"] - e["debits_pending"]
    credits = [e for e in entries if e["account"] == "credits"]
    assert credits[0]["credits_posted"] == 200_000
    assert credits[-1]["debits_posted"] == 65_000  # 20,000 (k2) + 45,000 (k3 and its excess)


def reads_and_audit(flow: Flow, alice: httpx.Client, auditor: httpx.Client) -> None:
    balances = ok(alice.get("/v1/customers/alice/balances"))
    assert (balances["balances"], balances["total"]) == (
        {"credits": 135_000, "grant:welcome": 0},
        135_000,
    )
    assert alice.get("/v1/customers/bob/balances").status_code == 403
    assert alice.get("/v1/audit").status_code == 403
    assert ok(auditor.get("/v1/customers/bob/balances"))["balances"] == {"credits": 0}
    history_checks(alice)
    report = ok(auditor.get("/v1/audit"))
    assert (report["ok"], report["hash_chain_ok"], report["discrepancies"]) == (True, True, [])
    assert report["unsettled"] == {"count": 0, "oldest_occurred_at": None}
    counts = report["counts"]
    assert (counts["usage_events"], counts["usage_rejections"], counts["completions"]) == (3, 1, 3)
    assert (counts["decisions"], counts["monetization_events"]) == (6, 5)
    totals = report["totals"]
    assert (totals["charged"], totals["written_off"], totals["usage_units"]) == (
        125_000,
        5_000,
        130,
    )
    assert (totals["units_credits"], totals["units_grants"], totals["units_free"]) == (75, 50, 0)


def metrics_checks(base: str) -> None:
    text = httpx.get(base + "/metrics").text
    decisions = "tollgate_decisions_total"
    assert metric(text, decisions, outcome="allowed", layer="windows") == 2
    assert metric(text, decisions, outcome="allowed", layer="credits") == 3
    assert metric(text, decisions, outcome="refused", layer="none") == 1
    assert metric(text, "tollgate_decision_units_total", layer="grants") == 50
    # k4's refusal: one reason per layer that fell short (grants and credits both did)
    assert metric(text, "tollgate_refusals_total", reason="insufficient_funds") == 2
    assert metric(text, "tollgate_refusals_total", reason="exceeds_window_limit") == 1
    assert metric(text, "tollgate_write_offs_total") == 1
    assert metric(text, "tollgate_written_off_microcredits_total") == 5_000
    assert metric(text, "tollgate_settled_events_total") == 1
    assert metric(text, "tollgate_settlement_backlog") == 0
    assert metric(text, "tollgate_settlement_lag_seconds") == 0


def run_flow(base: str, admin_key: str) -> None:
    flow = Flow(base, admin_key)
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert "/v1/decisions" in httpx.get(base + "/openapi.json").json()["paths"]
    assert httpx.get(base + "/docs").status_code == 200
    set_up(flow)
    service, auditor = flow.key("service"), flow.key("auditor")
    alice = flow.key("customer", "alice")
    k3 = decisions_and_completions(flow, service, alice)
    usage_and_settlement(flow, service, k3)
    reads_and_audit(flow, alice, auditor)
    metrics_checks(base)


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM: a graceful shutdown that closes the store (uvicorn re-raises the signal).
    Returns the server's log."""
    process.terminate()
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    process.log.seek(0)  # type: ignore[attr-defined]
    log = process.log.read().decode()  # type: ignore[attr-defined]
    assert "tollgate: stopped; the store is closed" in log, log
    assert "Traceback" not in log, log
    return log


def test_serve_on_sqlite_end_to_end(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    admin_key = create_key(db_url, "admin")  # what `tollgate keys create` does, before serving
    with served(db_url) as (base, process):
        run_flow(base, admin_key)
        stop(process)
    with served(db_url) as (base, process):  # a restart: keys and data are in the file
        admin = httpx.Client(base_url=base, headers=bearer(admin_key))
        assert ok(admin.get("/v1/customers/alice/balances"))["total"] == 135_000
        assert ok(admin.get("/v1/audit"))["ok"] is True
        stop(process)


def test_a_killed_server_still_counts_what_its_windows_took(tmp_path: Path) -> None:
    """SIGKILL, no shutdown at all: the restarted server rebuilds its memory windows from the
    database, so the 5-hour window still holds the 70 units taken before the crash."""
    db_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    admin_key, service_key = create_key(db_url, "admin"), create_key(db_url, "service")
    with served(db_url) as (base, process):
        admin = Flow(base, admin_key).admin
        ok(admin.post("/v1/plans", json=PLAN))
        ok(admin.post("/v1/price-books", json=PRICES))
        ok(admin.post("/v1/customers", json={"customer": "carol", "plan": "pro"}))
        ok(admin.post("/v1/customers/carol/purchases", json={"purchase_id": "c1", "amount": 10**6}))
        service = httpx.Client(base_url=base, headers=bearer(service_key), timeout=30)
        assert by_layer(decide(service, "carol", 70, "k1")["parts"]) == {"windows": (70, 0)}
        process.kill()
        assert process.wait(timeout=20) == -signal.SIGKILL
    with served(db_url) as (base, process):
        service = httpx.Client(base_url=base, headers=bearer(service_key), timeout=30)
        second = decide(service, "carol", 50, "k2")
        assert by_layer(second["parts"]) == {"windows": (30, 0), "credits": (20, 20 * PRICE)}
        log = stop(process)
    assert "windows in this process (rebuilt from 1 recorded decision(s))" in log


def refused(db_url: str, redis_url: str | None = None) -> str:
    """What a server that must not start beside the running ones prints; it exits with 1."""
    argv, env = _server_command(db_url, redis_url, free_port())
    done = subprocess.run(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert done.returncode == 1, (done.returncode, done.stderr)
    return done.stderr.decode()


def test_a_second_server_beside_one_with_memory_windows_is_refused(
    tmp_path: Path, redis_url: str
) -> None:
    """Two servers each with their own memory windows would each let a customer take the whole
    of every window; one sharing Redis beside them would not see theirs either."""
    db_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    with served(db_url) as (base, process):
        assert "must be the only one" in refused(db_url)
        assert "must all keep their windows in Redis" in refused(db_url, redis_url)
        assert httpx.get(base + "/readyz", timeout=5).status_code == 200  # still serving
        stop(process)
    with served(db_url) as (_, process):  # once stopped, its lock is gone
        stop(process)


def test_a_refused_server_opens_no_meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock comes before the meter: a refused server sets up and rebuilds nothing."""
    # `ledger.api.serve` is also the name of the function the package exports.
    serve_module = importlib.import_module("ledger.api.serve")
    db_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    first = serve_module.open_meter(db_url, serves=True)
    built: list[object] = []
    with monkeypatch.context() as patched:
        patched.setattr(serve_module, "Meter", lambda *args: built.append(args))
        with pytest.raises(serve_module.ServerConflictError, match="must be the only one"):
            serve_module.open_meter(db_url, serves=True)
    assert built == []
    serve_module.close_meter(first)
    serve_module.close_meter(serve_module.open_meter(db_url, serves=True))  # its lock is gone


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with cluster_for_tests(fsync=False) as cluster:
        yield cluster.create_database("api_e2e")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    try:
        with running_server() as url:
            yield url
    except ServerUnavailable as exc:
        skip_or_fail_redis(str(exc))


def test_serve_on_postgres_with_redis_end_to_end(pg_url: str, redis_url: str) -> None:
    admin_key = create_key(pg_url, "admin")
    with served(pg_url, redis_url) as (base, process):
        run_flow(base, admin_key)
        stop(process)


def test_servers_sharing_redis_windows_serve_one_database_together(
    pg_url: str, redis_url: str
) -> None:
    with served(pg_url, redis_url) as (first, one), served(pg_url, redis_url) as (second, two):
        for base in (first, second):
            assert httpx.get(base + "/readyz", timeout=5).status_code == 200
        assert "must be the only one" in refused(pg_url)  # memory windows beside them
        stop(one)
        stop(two)

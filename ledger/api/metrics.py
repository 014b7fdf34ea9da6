"""Prometheus metrics of one app, in a `CollectorRegistry` of its own (so that several apps in
one process, as in the tests, never share or collide).

- `tollgate_decisions_total{outcome, layer}`: decisions made; `outcome` is allowed or refused;
  `layer` is the deepest layer that served an allowed decision (windows, allowance, grants,
  credits, pool, overage) and `none` for a refusal.
- `tollgate_decision_units_total{layer}`: units served per layer.
- `tollgate_refusals_total{reason}`: refusal reasons (one decision may give several).
- `tollgate_settled_events_total`, `tollgate_settlement_backlog`, `tollgate_settlement_lag_seconds`
  (now minus the oldest unsettled usage event's occurred_at; 0 when none is waiting).
- `tollgate_write_offs_total` and `tollgate_written_off_microcredits_total`: completions (by the
  API or the settlement worker) whose charge the balances could not cover.
- `tollgate_grants_expired_total`: breakage transfers made by grant expiry sweeps.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ledger.metering import Completion, Decision

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def layer_kind(layer: str) -> str:
    return "grants" if layer.startswith("grant:") else layer


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "tollgate_decisions", "Decisions made.", ["outcome", "layer"], registry=r
        )
        self.units = Counter(
            "tollgate_decision_units", "Units served, per layer.", ["layer"], registry=r
        )
        self.refusals = Counter("tollgate_refusals", "Refusal reasons.", ["reason"], registry=r)
        self.settled = Counter("tollgate_settled_events", "Usage events settled.", registry=r)
        self.backlog = Gauge(
            "tollgate_settlement_backlog", "Usage events waiting for settlement.", registry=r
        )
        self.lag = Gauge(
            "tollgate_settlement_lag_seconds",
            "Age of the oldest unsettled usage event (0 when none waits).",
            registry=r,
        )
        self.write_offs = Counter(
            "tollgate_write_offs", "Completions with a written-off remainder.", registry=r
        )
        self.written_off = Counter(
            "tollgate_written_off_microcredits", "Micro-credits written off.", registry=r
        )
        self.grants_expired = Counter(
            "tollgate_grants_expired", "Breakage transfers of expired grants.", registry=r
        )

    def decision(self, d: Decision) -> None:
        if not d.allowed:
            self.decisions.labels("refused", "none").inc()
            for reason in d.reasons:
                self.refusals.labels(reason.code).inc()
            return
        deepest = layer_kind(d.parts[-1].layer) if d.parts else "none"
        self.decisions.labels("allowed", deepest).inc()
        for part in d.parts:
            self.units.labels(layer_kind(part.layer)).inc(part.units)

    def completion(self, c: Completion) -> None:
        if c.written_off:
            self.write_offs.inc()
            self.written_off.inc(c.written_off)

    def settlement(self, backlog: int, oldest: int | None, now: int) -> None:
        self.backlog.set(backlog)
        lag_ns = 0 if oldest is None else max(0, now - oldest)
        self.lag.set(lag_ns / 1e9)

    def render(self) -> bytes:
        return generate_latest(self.registry)

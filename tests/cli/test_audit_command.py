"""`tollgate audit`: its exit code and output follow the audit of the database it is given."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from ledger.cli import app
from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.store import SqliteStore

runner = CliRunner()
S = 10**9


def _settled_database(path: Path) -> None:
    meter = Meter(SqliteStore(path))
    meter.publish_plan(
        plan_from_data(
            {"plan": "p", "version": 1, "features": {"f": {"layers": [{"kind": "credits"}]}}}
        )
    )
    meter.publish_prices(
        price_book_from_data({"version": 1, "effective_from": 0, "prices": {"f": 3}})
    )
    meter.add_customer("c", "p", S)
    meter.purchase("c", 1_000, "o1", S)
    for i in range(3):
        d = meter.decide("c", "f", 10, f"k{i}", 2 * S + i)
        meter.complete(d.decision_id, 8 + i, 3 * S + i)
    meter.store.close()


def test_a_clean_database_passes(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _settled_database(db)
    out = tmp_path / "audit.json"
    result = runner.invoke(app, ["audit", "--db", f"sqlite:///{db}", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "audit: 0 discrepancies" in result.output
    written = json.loads(out.read_text())
    assert written["ok"] is True
    assert written["totals"]["charged"] == (8 + 9 + 10) * 3
    assert written["counts"]["usage_events"] == 3


def test_a_tampered_database_fails_naming_the_row(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _settled_database(db)
    with sqlite3.connect(db) as conn:
        (usage_id,) = conn.execute("SELECT id FROM usage_events LIMIT 1").fetchone()
        conn.execute("UPDATE usage_events SET units = units + 1 WHERE id = ?", (usage_id,))
    result = runner.invoke(app, ["audit", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert str(usage_id) in result.output
    assert "1 discrepancies" in result.output


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    result = runner.invoke(app, ["audit", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 2
    assert "no database at" in result.output
    assert not db.exists()

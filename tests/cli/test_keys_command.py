"""`tollgate keys create | list | revoke`: keys are shown once, listed by id (never the key),
revoked by id, and every mistake is exit code 2 with a message saying what to do."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ledger.api import Keyring
from ledger.api.auth import key_hash
from ledger.cli import app
from ledger.metering import Meter
from ledger.store import SqliteStore

runner = CliRunner()


def test_a_key_is_created_listed_revoked_and_then_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    made = runner.invoke(app, ["keys", "create", "--db", db, "--role", "service"])
    assert made.exit_code == 0, made.output
    key = made.stdout.splitlines()[0]
    key_id = key_hash(key)[:12]

    listed = runner.invoke(app, ["keys", "list", "--db", db])
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.output.splitlines() if key_id in line]
    assert "service" in row
    assert key not in listed.output

    revoked = runner.invoke(app, ["keys", "revoke", "--db", db, key_id])
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output.startswith(f"revoked {key_id} (service) at ")
    with SqliteStore(tmp_path / "keys.db") as store:
        assert Keyring(Meter(store)).lookup(key) is None


def test_mistakes_exit_2_and_say_what_to_do(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    assert runner.invoke(app, ["keys", "create", "--db", db, "--role", "admin"]).exit_code == 0
    cases = [
        (["keys", "revoke", "--db", db, "0" * 12], "no key has the id 000000000000"),
        (["keys", "revoke", "--db", db, "not-an-id"], "a key id is 12 hex digits"),
        (["keys", "list", "--db", "memory://"], "lives in the server's process"),
        (["keys", "revoke", "--db", "memory://", "0" * 12], "lives in the server's process"),
    ]
    for argv, message in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert message in result.output, (argv, result.output)

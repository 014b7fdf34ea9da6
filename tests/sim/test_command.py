"""What `tollgate simulate` runs and prints (ledger/sim/command.py; ledger/cli.py only parses
the options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.sim.command import parse_seeds, run


def _run(**options: object) -> tuple[int, str]:
    lines: list[str] = []
    given = {
        "seed": None,
        "seeds": None,
        "steps": 200,
        "store": "memory",
        "only": None,
        "trace": None,
        "processes": 1,
    }
    given.update(options)
    code = run(echo=lines.append, **given)  # type: ignore[arg-type]
    return code, "\n".join(lines)


def test_seeds_are_a_range_both_ends_included() -> None:
    assert parse_seeds("3..5") == range(3, 6)
    assert parse_seeds("7") == range(7, 8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give --seed N"),
        ({"seed": 1, "seeds": "0..3"}, "give --seed N"),
        ({"seed": 1, "store": "redis"}, "--store is memory or sqlite"),
        ({"seeds": "5..1"}, "0 <= A <= B"),
        ({"seeds": "a..b"}, "--seeds takes A..B"),
        ({"seed": 1, "only": "x"}, "--only takes step numbers"),
        ({"seeds": "0..1", "only": "1"}, "go with --seed N"),
    ],
)
def test_bad_options_exit_2_with_a_message(options: dict[str, object], message: str) -> None:
    code, out = _run(**options)
    assert code == 2
    assert message in out


def test_one_seed_prints_its_summary_and_writes_its_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    code, out = _run(seed=3, trace=trace)
    assert out.startswith("seed 3: ")
    assert "faults injected:" in out
    assert trace.read_text().startswith("seed 3; nodes ")
    assert (code == 0) == ("violations: none" in out)


def test_a_swarm_prints_seeds_steps_faults_and_violations() -> None:
    code, out = _run(seeds="0..1")
    assert "swarm: 2 seeds x 200 steps on memory" in out
    assert "faults injected:" in out
    assert "violations:" in out
    assert (code == 0) == ("violations: none" in out)

"""CrossHair contracts (proofs/crosshair_targets.py) and their runner (proofs/crosshair_check.py).

Fast: the targets are well formed and bounded; every contract holds on a few hundred concrete
inputs per target (so a contract that is simply wrong fails here in a second, and the accepted
branch of each kernel step is shown reachable); the output parser turns every failure shape
(counterexample, unmet precondition, exception, crash, time-out) into `holds=False`; each seeded
bug's pattern still occurs exactly once in the source.

Slow (CrossHair itself, read from the session's `tollgate prove --mutants` report; see
conftest.py): every real contract holds within its budget, and every seeded twin is refuted.
"""

from __future__ import annotations

import inspect
import random
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.core.limits import AMOUNT_MAX, TIMESTAMP_MAX_NS
from ledger.core.ops import TotalMap
from proofs import crosshair_check as check
from proofs import crosshair_targets as targets
from proofs.report import MutantOutcome, Outcome

TARGETS = check.targets_of()
CONTRACTS = [c for t in TARGETS for c in t.contracts]
OBLIGATIONS = [c.obligation for c in CONTRACTS]
MUTANT_NAMES = [m.name for m in check.MUTANTS]
REQUIREMENTS = {f"L{i}" for i in range(1, 8)} | {"M3"}


# --- the targets are well formed --------------------------------------------------------------


def test_targets_are_found_bounded_and_named() -> None:
    names = {t.function for t in TARGETS}
    assert {
        "kernel_transfer",
        "kernel_guarded_transfer",
        "kernel_transfer_options",
        "kernel_resolve",
        "kernel_replay",
        "kernel_expire",
        "kernel_amount",
        "total_map_laws",
        "engine_balanced",
        "engine_overflow_check",
        "engine_fits",
        "engine_field_check",
        "engine_pending_check",
        "allocation_waterfall",
        "fill_waterfall",
    } <= names
    assert len(set(OBLIGATIONS)) == len(OBLIGATIONS)
    for t in TARGETS:
        assert t.max_iterations, f"{t.function} has no '# crosshair: max_iterations=N' directive"
        assert t.pre_lines, f"{t.function} states no precondition"
    for c in CONTRACTS:
        assert c.requirement and set(c.requirement) <= REQUIREMENTS, c


def test_every_target_has_a_seeded_twin() -> None:
    refuted_targets = {m.target for m in check.MUTANTS}
    assert refuted_targets == {t.function for t in TARGETS}
    assert len(set(MUTANT_NAMES)) == len(MUTANT_NAMES)


@pytest.mark.parametrize("name", MUTANT_NAMES)
def test_seeded_twin_pattern_occurs_once(name: str) -> None:
    mutant = next(m for m in check.MUTANTS if m.name == name)
    source = (check.ROOT / mutant.path).read_text()
    assert source.count(mutant.old) == 1, f"{name}: the source changed; update the mutant"
    assert mutant.old != mutant.new


# --- every contract holds on concrete inputs (plain Python, no CrossHair) -------------------------

_EDGES = (0, 1, 2, 3, 4, 5, 10, 100, 2**61 - 1, AMOUNT_MAX - 1, AMOUNT_MAX, TIMESTAMP_MAX_NS)


def _conditions(fn: Callable[..., Any], kind: str) -> list[str]:
    doc = inspect.getdoc(fn) or ""
    found = []
    for line in doc.splitlines():
        m = re.match(rf"^\s*{kind}:\s*(.*?)\s*(#.*)?$", line)
        if m:
            found.append(m.group(1))
    return found


def _sample(hints: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, hint in hints.items():
        if name == "return":
            continue
        if hint is bool:
            args[name] = rng.random() < 0.5
        else:
            roll = rng.random()
            args[name] = (
                rng.randint(0, 6)
                if roll < 0.5
                else rng.choice(_EDGES)
                if roll < 0.7
                else rng.randint(0, 120)
            )
    return args


@pytest.mark.parametrize("function", [t.function for t in TARGETS])
def test_contracts_hold_on_concrete_inputs(function: str) -> None:
    fn = getattr(targets, function)
    hints = typing.get_type_hints(fn)
    pres, posts = _conditions(fn, "pre"), _conditions(fn, "post")
    assert posts
    rng = random.Random(f"crosshair-{function}")
    met = accepted = rejected = 0
    for _ in range(3000):
        args = _sample(hints, rng)
        scope = {**vars(targets), **args}
        if not all(eval(p, scope) for p in pres):
            continue
        met += 1
        scope["__return__"] = result = fn(**args)
        for post in posts:
            assert eval(post, scope), f"{function}({args}): {post}"
        if isinstance(result, targets.Step):
            accepted += result.code == targets.OK
            rejected += result.code != targets.OK
        if met >= 300:
            break
    assert met >= 20, f"{function}: preconditions met by only {met} samples"
    if hints["return"] is targets.Step:
        assert accepted and rejected, f"{function}: accepted {accepted}, rejected {rejected}"


def test_flat_map_reads_and_writes_like_total_map() -> None:
    rng = random.Random(7)
    for _ in range(200):
        default: Any = rng.choice((0, False))
        pairs = {k: rng.randint(0, 2) for k in rng.sample(range(1, 5), rng.randint(0, 3))}
        flat = targets.FlatMap(default, tuple(pairs.items()))
        total = TotalMap(default, pairs)
        key, value = rng.randint(1, 5), rng.randint(0, 2)
        flat2, total2 = flat.set(key, value), total.set(key, value)
        for k in range(0, 7):
            assert flat[k] == total[k] and flat2[k] == total2[k]
        assert (flat2 == flat) == (total2 == total)


# --- the runner turns every failure shape into holds=False ------------------------------------

_FILE = str(check.module_path(check.MODULE))


def _target(function: str) -> check.Target:
    return next(t for t in TARGETS if t.function == function)


def _judge(function: str, stdout: str, stderr: str = "", code: int | None = 0) -> list[Outcome]:
    return check.judge(_target(function), stdout, stderr, code, 1.0, check.DEFAULT_BUDGET)


def _post_line(function: str, index: int = 0) -> int:
    return sorted({c.line for c in _target(function).contracts})[index]


def test_not_confirmed_is_a_bounded_pass() -> None:
    t = _target("engine_balanced")
    out = "".join(f"{_FILE}:{c.line}: info: Not confirmed.\n" for c in t.contracts)
    outcomes = _judge("engine_balanced", out)
    assert [o.obligation for o in outcomes] == [c.obligation for c in t.contracts]
    for o in outcomes:
        assert o.holds and o.checker == "crosshair" and "not a proof" in o.detail
        assert "max_iterations=40" in o.detail


def test_confirmed_over_all_paths_passes_with_caveat() -> None:
    line = _post_line("engine_fits")
    (o,) = _judge("engine_fits", f"{_FILE}:{line}: info: Confirmed over all paths.\n")
    assert o.holds and "not a proof" in o.detail


def test_counterexample_fails_with_the_message() -> None:
    line = _post_line("engine_fits")
    message = "false when calling engine_fits(1, 0, 1, 0, 0, 0, True, False, 1, False)"
    (o,) = _judge("engine_fits", f"{_FILE}:{line}: error: {message}\n", code=1)
    assert not o.holds and message in o.detail


def test_unmet_precondition_fails_although_crosshair_exits_zero() -> None:
    t = _target("engine_fits")
    out = f"{_FILE}:{t.pre_lines[0]}: info: Unable to meet precondition.\n"
    (o,) = _judge("engine_fits", out, code=0)
    assert not o.holds and "precondition" in o.detail


def test_exception_elsewhere_fails_every_contract() -> None:
    t = _target("engine_balanced")
    out = f"{_FILE}:{t.last_line}: error: ValueError: boom when calling engine_balanced(1)\n"
    outcomes = _judge("engine_balanced", out, code=1)
    assert outcomes and all(not o.holds and "ValueError: boom" in o.detail for o in outcomes)


def test_crash_and_time_out_and_silence_fail() -> None:
    for out, err, code, words in (
        ("", "Traceback ...\nImportError: nope", 2, "ImportError"),
        ("", "", None, "time-out"),
        ("", "", 0, "no status"),
    ):
        outcomes = _judge("engine_overflow_check", out, err, code)
        assert outcomes and all(not o.holds and words in o.detail for o in outcomes), words


def test_call_is_read_from_a_counterexample() -> None:
    message = "false when calling f(1, (2, 3), True) (which returns Step(event=1))"
    assert check._call_in(message) == "f(1, (2, 3), True)"
    assert check._call_in("Not confirmed.") is None


def test_end_to_end_on_a_scratch_module(tmp_path: Path) -> None:
    """A real `crosshair check` run: an unmet precondition and a counterexample both fail; a
    true contract passes (a second or two)."""
    (tmp_path / "scratch_targets.py").write_text(
        "# crosshair: max_iterations=20\n"
        "def impossible(x: int) -> int:\n"
        '    """\n'
        "    pre: x > 0 and x < 0\n"
        "    post: __return__ == x  # same: L7\n"
        '    """\n'
        "    return x\n"
        "\n"
        "def wrong(x: int) -> int:\n"
        '    """\n'
        "    pre: x >= 0\n"
        "    post: __return__ != 7  # never_seven: L7\n"
        "    post: __return__ >= x  # grows: L7\n"
        '    """\n'
        "    return x\n"
    )
    found = {t.function: t for t in check.targets_of("scratch_targets", tmp_path)}
    (impossible,) = check.check_target(found["impossible"], root=tmp_path)
    assert not impossible.holds and "precondition" in impossible.detail
    seven, grows = check.check_target(found["wrong"], root=tmp_path)
    assert not seven.holds and "wrong(7)" in seven.detail
    assert grows.holds and "not a proof" in grows.detail


def test_targets_not_started_within_the_whole_run_budget_fail_in_target_order() -> None:
    """The run's wall-clock limit holds whether the targets run one by one or side by side; a
    target not started in time fails every contract, and outcomes keep the targets' order."""
    spent = check.Budget(total_timeout_seconds=0.5)
    outcomes = check._run(TARGETS, spent, check.ROOT)
    assert [o.obligation for o in outcomes] == OBLIGATIONS
    assert all(not o.holds and "budget was spent" in o.detail for o in outcomes)


def test_side_by_side_returns_each_result_in_the_items_order() -> None:
    assert check._side_by_side(lambda n: n * n, range(40)) == [n * n for n in range(40)]


# --- CrossHair on the real contracts and on the seeded twins (slow) -----------------------------


@pytest.mark.slow
@pytest.mark.parametrize("obligation", OBLIGATIONS)
def test_real_contract_holds_within_budget(proved: dict[str, Outcome], obligation: str) -> None:
    outcome = proved[obligation]
    assert outcome.holds, f"{obligation}: {outcome.detail}"
    assert outcome.checker == "crosshair" and outcome.requirement


@pytest.mark.slow
@pytest.mark.parametrize("name", MUTANT_NAMES)
def test_seeded_twin_is_refuted(seeded: dict[str, MutantOutcome], name: str) -> None:
    mutant = next(m for m in check.MUTANTS if m.name == name)
    result = seeded[f"crosshair.{name}"]
    assert result.killed, f"{name} survived: {result.description}"
    assert all(k.startswith(f"crosshair.{mutant.target}.") for k in result.killed_by)
    assert all("counterexample" in k for k in result.killed_by)

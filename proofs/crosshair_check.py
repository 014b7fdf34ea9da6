"""Run CrossHair on the contracts in proofs/crosshair_targets.py and report `Outcome`s.

`run()` checks each target function in its own `crosshair check --report_all` process with
`PYTHONHASHSEED=0`, `--per_path_timeout`, `--per_condition_timeout` (a CPU-seconds cap per
postcondition; the count bound is each target's `# crosshair: max_iterations=N` directive) and an
outer wall-clock timeout. One process per function because CrossHair prints nothing until every
condition of its targets is done: a time-out then loses one function's results, not all of them.
The processes run side by side, as many at once as this process has cores.

One `Outcome` per contract, named `crosshair.<function>.<name>`: a `post: ...  # name: L1,L7`
line is one contract; a `post: all_hold(TABLE, __return__)` line is one contract per property
of TABLE (one shared search; see proofs/crosshair_targets.py). Reading of the output:
- "Confirmed over all paths."  -> holds, detail says what that does and does not mean;
- "Not confirmed."             -> holds, detail says: no counterexample within the budget, which
                                  is a bounded search and not a proof;
- an `error:` line on the post -> fails, detail is CrossHair's counterexample; for a table post
                                  the counterexample is re-run concretely to name the properties
                                  it violates (the others fail as "not searched to the end");
- "Unable to meet precondition" (CrossHair prints it as `info` and exits 0!) -> fails;
- an error elsewhere (an exception in the code, an import error), a crash, a time-out, or a post
  with no status at all -> fails, with the message in `detail`.

`run_mutants()` copies the project to a temporary directory, plants one seeded bug at a time in
the real source (kernel, engine, ops, allocate) and checks that CrossHair refutes the named
target on it.

Command line: `python -m proofs.crosshair_check [--mutants] [TARGET ...]`.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from proofs.report import MutantOutcome, Outcome

ROOT = Path(__file__).resolve().parent.parent
MODULE = "proofs.crosshair_targets"
CHECKER = "crosshair"


@dataclass(frozen=True, slots=True)
class Budget:
    """How long CrossHair may search. The count bound (max_iterations) lives in the targets.

    Attributes:
        per_path_timeout_seconds: CPU seconds for one execution path.
        per_condition_timeout_seconds: CPU seconds cap for one postcondition (a safety cap: the
            max_iterations directives normally stop the search well before it).
        target_timeout_seconds: outer wall-clock limit of one `crosshair check` process.
        total_timeout_seconds: wall-clock limit of the whole run; targets not started in time
            are reported as failures. It only stops a runaway (the limits above bound the
            search), so it leaves room for a slow machine: the 15 targets took 117.6 s one
            after another on an idle but slow day (they now run side by side).
    """

    per_path_timeout_seconds: float = 2.0
    per_condition_timeout_seconds: float = 30.0
    target_timeout_seconds: float = 60.0
    total_timeout_seconds: float = 360.0


DEFAULT_BUDGET = Budget()

_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<level>info|error): (?P<message>.*)$")
_POST = re.compile(
    r"^\s*post(\[[^\]]*\])?:\s*(?P<expr>.*?)\s*#\s*(?P<name>[\w.]+)\s*:\s*(?P<req>[\w, ]*?)\s*$"
)
_TABLE_POST = re.compile(r"^\s*post:\s*all_hold\((?P<table>\w+),\s*__return__\)\s*(#.*)?$")
_ANY_POST = re.compile(r"^\s*post(\[[^\]]*\])?:")
_PRE = re.compile(r"^\s*pre:")
_ITERATIONS = re.compile(r"#\s*crosshair:\s*max_iterations\s*=\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Contract:
    """One contract of a target function: a named `post:` line, or one property of the table a
    `post: all_hold(TABLE, __return__)` line checks (several contracts then share that line)."""

    function: str
    name: str
    line: int
    requirement: tuple[str, ...]
    table: str | None = None

    @property
    def obligation(self) -> str:
        return f"{CHECKER}.{self.function}.{self.name}"


@dataclass(frozen=True, slots=True)
class Target:
    """A contracted function: where it is and what it promises."""

    module: str
    function: str
    path: Path
    first_line: int
    last_line: int
    pre_lines: tuple[int, ...]
    contracts: tuple[Contract, ...]
    max_iterations: int | None


def module_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _table(module: str, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """Names and requirements of the properties in `module.name` (read from this checkout: a
    mutated copy differs only in ledger/ code, never in the tables)."""
    properties = getattr(importlib.import_module(module), name)
    return [(p.name, tuple(p.requirement)) for p in properties]


def _docstring_lines(node: ast.FunctionDef) -> range:
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return range(first.lineno, (first.end_lineno or first.lineno) + 1)
    return range(0)


def targets_of(module: str = MODULE, root: Path = ROOT) -> list[Target]:
    """Every top-level function of `module` with at least one named `post:` line."""
    path = module_path(module, root)
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        first, last = node.lineno, node.end_lineno or node.lineno
        contracts, pres, iterations = [], [], None
        doc = _docstring_lines(node)
        for number in range(first, last + 1):
            text = lines[number - 1]
            directive = _ITERATIONS.search(text)
            if directive:
                iterations = int(directive[1])
            if number not in doc:
                continue
            post = _POST.match(text)
            table = _TABLE_POST.match(text)
            if table:
                contracts += [
                    Contract(node.name, name, number, requirement, table["table"])
                    for name, requirement in _table(module, table["table"])
                ]
            elif post:
                requirement = tuple(r.strip() for r in post["req"].split(",") if r.strip())
                contracts.append(Contract(node.name, post["name"], number, requirement))
            elif _ANY_POST.match(text):
                raise ValueError(f"{path}:{number}: a post line needs '# <name>: <requirements>'")
            if _PRE.match(text):
                pres.append(number)
        if contracts:
            found.append(
                Target(
                    module, node.name, path, first, last, tuple(pres), tuple(contracts), iterations
                )
            )
    return found


def _select(module_targets: Sequence[str] | None, root: Path) -> list[Target]:
    """`module_targets` holds modules ("proofs.crosshair_targets") or functions in them
    ("proofs.crosshair_targets.kernel_transfer"); None means every target of MODULE."""
    if module_targets is None:
        return targets_of(MODULE, root)
    chosen: list[Target] = []
    for name in module_targets:
        if module_path(name, root).exists():
            chosen += targets_of(name, root)
            continue
        module, _, function = name.rpartition(".")
        matches = [t for t in targets_of(module, root) if t.function == function]
        if not matches:
            raise ValueError(f"no contracted function {name!r}")
        chosen += matches
    return chosen


def _command(target: Target, budget: Budget) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--report_all",
        f"--per_path_timeout={budget.per_path_timeout_seconds}",
        f"--per_condition_timeout={budget.per_condition_timeout_seconds}",
        f"{target.module}.{target.function}",
    ]


def _budget_note(target: Target, budget: Budget) -> str:
    return (
        f"max_iterations={target.max_iterations}, "
        f"per_path_timeout={budget.per_path_timeout_seconds}s, "
        f"per_condition_timeout={budget.per_condition_timeout_seconds}s CPU, PYTHONHASHSEED=0"
    )


def _same_file(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def parse(target: Target, stdout: str) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """Split CrossHair's output into statuses by post line and every other message (unmet
    preconditions, errors outside a post line, lines that do not parse)."""
    by_line: dict[int, tuple[str, str]] = {}
    other: list[str] = []
    post_lines = {c.line for c in target.contracts}
    for raw in stdout.splitlines():
        if not raw.strip():
            continue
        m = _LINE.match(raw)
        if m is None:
            other.append(raw)
            continue
        line = int(m["line"])
        if _same_file(m["file"], target.path) and line in post_lines:
            by_line[line] = (m["level"], m["message"])
        else:
            other.append(raw)
    return by_line, other


def _outcome(contract: Contract, holds: bool, seconds: float, detail: str) -> Outcome:
    return Outcome(
        obligation=contract.obligation,
        checker=CHECKER,
        holds=holds,
        seconds=round(seconds, 3),
        detail=detail,
        requirement=contract.requirement,
    )


def _call_in(message: str) -> str | None:
    """The call after "when calling " in a CrossHair message, e.g. "f(1, True)"."""
    start = message.find("when calling ")
    if start < 0:
        return None
    start += len("when calling ")
    opened = message.find("(", start)
    if opened < 0:
        return None
    depth = 0
    for index in range(opened, len(message)):
        depth += {"(": 1, ")": -1}.get(message[index], 0)
        if depth == 0:
            return message[start : index + 1]
    return None


_REPLAY = """
import json, sys
import {module} as m
run = eval(sys.argv[1], vars(m))
print(json.dumps([[p.name, bool(p.holds(run))] for p in m.{table}]))
"""


def replay(target: Target, table: str, call: str, root: Path) -> dict[str, bool] | str:
    """Re-run CrossHair's counterexample `call` concretely (in `root`, with the same code) and
    evaluate each property of `table` on it; a string is the reason it could not be done."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(root))
    script = _REPLAY.format(module=target.module, table=table)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, call],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the concrete re-run timed out"
    if done.returncode != 0:
        return "the concrete re-run failed: " + done.stderr.strip()[-500:]
    return {name: holds for name, holds in json.loads(done.stdout)}


def _table_outcomes(
    contracts: Sequence[Contract], message: str, share: float, target: Target, root: Path
) -> list[Outcome]:
    """Outcomes of the properties of one `all_hold` post that CrossHair refuted."""
    call = _call_in(message)
    verdicts = replay(target, contracts[0].table or "", call, root) if call else "no call to re-run"
    if isinstance(verdicts, str) or all(verdicts.get(c.name, True) for c in contracts):
        why = verdicts if isinstance(verdicts, str) else "every property holds on it"
        detail = f"counterexample (not reproduced concretely: {why}): {message}"
        return [_outcome(c, False, share, detail) for c in contracts]
    broken = [c.name for c in contracts if not verdicts.get(c.name, True)]
    outcomes = []
    for c in contracts:
        if c.name in broken:
            detail = f"counterexample (re-run concretely, it violates this property): {message}"
        else:
            detail = (
                "not searched to the end: the shared search stopped at a counterexample to "
                f"{', '.join(broken)}"
            )
        outcomes.append(_outcome(c, False, share, detail))
    return outcomes


def judge(
    target: Target,
    stdout: str,
    stderr: str,
    returncode: int | None,
    seconds: float,
    budget: Budget,
    root: Path = ROOT,
) -> list[Outcome]:
    """One Outcome per contract of `target`, from one `crosshair check` run (returncode None
    means the outer time-out killed it)."""
    by_line, other = parse(target, stdout)
    unmet = [m for m in other if "Unable to meet precondition" in m]
    problems = [m for m in other if m not in unmet]
    # An `error:` line off the post lines: the code (or a condition) raised on some input.
    found = [m for m in problems if ": error: " in m and "when calling" in m]
    share = seconds / max(1, len(target.contracts))
    note = _budget_note(target, budget)
    tail = stderr.strip()[-2000:]
    said = f"; CrossHair also said: {tail[-300:]}" if tail else ""
    outcomes: list[Outcome] = []
    for line in sorted({c.line for c in target.contracts}):
        contracts = [c for c in target.contracts if c.line == line]
        level, message = by_line.get(line, ("", ""))

        def all_(holds: bool, detail: str, contracts: list[Contract] = contracts) -> list[Outcome]:
            return [_outcome(c, holds, share, detail) for c in contracts]

        if returncode is None:
            killed = f"time-out: crosshair check killed after {seconds:.1f}s wall ({note})"
            outcomes += all_(False, killed)
        elif level == "error" and contracts[0].table is not None:
            outcomes += _table_outcomes(contracts, message, share, target, root)
        elif level == "error":
            outcomes += all_(False, f"counterexample: {message}")
        elif unmet:
            never = "precondition never met, nothing was checked: " + "; ".join(unmet)
            outcomes += all_(False, never)
        elif found:
            outcomes += all_(False, "exception found: " + "; ".join(found))
        elif problems or returncode not in (0, 1):
            outcomes += all_(False, "; ".join(problems) or f"crosshair exited {returncode}: {tail}")
        elif message.startswith("Confirmed over all paths"):
            outcomes += all_(
                True,
                f"CrossHair reports every path explored ({note}): for all inputs meeting the "
                "preconditions, as far as CrossHair is sound; supporting evidence, not a "
                f"proof{said}",
            )
        elif message.startswith("Not confirmed"):
            together = " (all properties checked on every path of one search)"
            shared = together if contracts[0].table else ""
            outcomes += all_(
                True,
                f"no counterexample within the budget ({note}){shared}; bounded search, not a "
                f"proof{said}",
            )
        else:
            silent = f"no status reported for this post (exit {returncode}): {message or tail}"
            outcomes += all_(False, silent)
    order = {c.obligation: i for i, c in enumerate(target.contracts)}
    return sorted(outcomes, key=lambda o: order[o.obligation])


def check_target(
    target: Target,
    budget: Budget = DEFAULT_BUDGET,
    root: Path = ROOT,
    wall_seconds: float | None = None,
) -> list[Outcome]:
    """Run `crosshair check` on one function and judge its output."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(root))
    limit = budget.target_timeout_seconds if wall_seconds is None else wall_seconds
    start = time.monotonic()
    try:
        done = subprocess.run(
            _command(target, budget),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(1.0, limit),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return judge(target, out, err, None, time.monotonic() - start, budget, root)
    return judge(
        target, done.stdout, done.stderr, done.returncode, time.monotonic() - start, budget, root
    )


def run(
    module_targets: Sequence[str] | None = None, budget: Budget = DEFAULT_BUDGET
) -> list[Outcome]:
    """Check every contract of the chosen targets (see the module docstring for the reading)."""
    return _run(_select(module_targets, ROOT), budget, ROOT)


def _run(targets: Iterable[Target], budget: Budget, root: Path) -> list[Outcome]:
    deadline = time.monotonic() + budget.total_timeout_seconds

    def one(target: Target) -> list[Outcome]:
        left = deadline - time.monotonic()
        if left < 1.0:
            return [
                _outcome(c, False, 0.0, "not run: the whole run's wall-clock budget was spent")
                for c in target.contracts
            ]
        return check_target(target, budget, root, min(budget.target_timeout_seconds, left))

    return [outcome for outcomes in _side_by_side(one, targets) for outcome in outcomes]


_T = TypeVar("_T")
_R = TypeVar("_R")


def _side_by_side(work: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """`work` on each item, in order, as many at once as this process has cores: each runs a
    `crosshair check` process and waits for it, so threads are enough."""
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        return list(pool.map(work, items))


# --- seeded bugs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mutant:
    """A seeded bug: replace `old` (which must occur exactly once) by `new` in `path`, then
    CrossHair must refute at least one contract of `target`."""

    name: str
    description: str
    target: str
    path: str
    old: str
    new: str


KERNEL = "ledger/core/kernel.py"
ENGINE = "ledger/core/engine.py"
OPS = "ledger/core/ops.py"
ALLOCATE = "ledger/metering/allocate.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "debit_guard_off_by_one",
        "the debits-must-not-exceed-credits guard lets a debit overdraw by one unit",
        "kernel_guarded_transfer",
        KERNEL,
        "dr_pending + a.dr_debits_posted + amount > a.dr_credits_posted,",
        "dr_pending + a.dr_debits_posted + amount > a.dr_credits_posted + 1,",
    ),
    Mutant(
        "debit_guard_too_strict",
        "the debit guard refuses a debit that uses the balance exactly (over-restrictive)",
        "kernel_guarded_transfer",
        KERNEL,
        "dr_pending + a.dr_debits_posted + amount > a.dr_credits_posted,",
        "dr_pending + a.dr_debits_posted + amount >= a.dr_credits_posted,",
    ),
    Mutant(
        "credit_posted_twice",
        "a posted transfer credits the credit account twice the amount",
        "kernel_transfer",
        KERNEL,
        "credits_posted=add(s.credits_posted, cr, posted_added),",
        "credits_posted=add(s.credits_posted, cr, posted_added + posted_added),",
    ),
    Mutant(
        "rejected_still_posts",
        "the posted amount is written even when the transfer is rejected",
        "kernel_transfer",
        KERNEL,
        "posted_added = ops.ite(ops.and_(ok, ops.or_(v.single, t.post_pending)), amount, 0)",
        "posted_added = ops.ite(ops.or_(v.single, t.post_pending), amount, 0)",
    ),
    Mutant(
        "overflow_check_ignores_amount",
        "the pending-plus-posted overflow check forgets the amount being added",
        "kernel_transfer",
        KERNEL,
        "ops.and_(not_void, dr_pending - released + a.dr_debits_posted + amount > AMOUNT_MAX),",
        "ops.and_(not_void, dr_pending - released + a.dr_debits_posted > AMOUNT_MAX),",
    ),
    Mutant(
        "balancing_credit_room_ignores_pending",
        "a balancing-credit transfer computes the room without the pending credits",
        "kernel_amount",
        KERNEL,
        "credit_room = _clamp_zero(ops, a.cr_debits_posted - a.cr_credits_posted"
        " - a.cr_credits_pending)",
        "credit_room = _clamp_zero(ops, a.cr_debits_posted - a.cr_credits_posted)",
    ),
    Mutant(
        "timeout_unit_forgotten",
        "the expiry-overflow check adds the timeout in seconds to a clock in nanoseconds",
        "kernel_transfer_options",
        KERNEL,
        "ops.and_(t.pending, ts + t.timeout * NS_PER_SECOND > TIMESTAMP_MAX_NS),",
        "ops.and_(t.pending, ts + t.timeout > TIMESTAMP_MAX_NS),",
    ),
    Mutant(
        "closed_credit_account_accepted",
        "the check that the credit account is not closed is gone",
        "kernel_transfer_options",
        KERNEL,
        "(ops.and_(not_void, ops.get(s.account_closed, cr)),"
        " Result.CREDIT_ACCOUNT_ALREADY_CLOSED),",
        "(False, Result.CREDIT_ACCOUNT_ALREADY_CLOSED),",
    ),
    Mutant(
        "post_above_pending",
        "a post may take one unit more than the pending amount",
        "kernel_resolve",
        KERNEL,
        "ops.and_(t.post_pending, t.amount > v.pending_amount),",
        "ops.and_(t.post_pending, t.amount > v.pending_amount + 1),",
    ),
    Mutant(
        "posted_pending_resolved_again",
        "the 'already posted' check is gone: a posted pending transfer can be posted again",
        "kernel_resolve",
        KERNEL,
        "(resolving(v.pending_status == STATUS_POSTED), Result.PENDING_TRANSFER_ALREADY_POSTED),",
        "(False, Result.PENDING_TRANSFER_ALREADY_POSTED),",
    ),
    Mutant(
        "replay_applied_again",
        "an identical replay of a stored non-pending transfer is applied again (double charge)",
        "kernel_replay",
        KERNEL,
        "checks.append((v.exists, Result.EXISTS))",
        "checks.append((ops.and_(v.exists, t.pending), Result.EXISTS))",
    ),
    Mutant(
        "transient_failure_forgotten",
        "a transient failure is not remembered, so a retry of the id can later succeed",
        "kernel_replay",
        KERNEL,
        "failed=ops.put(s.failed, t.id, ops.or_(ops.get(s.failed, t.id), transient))",
        "failed=ops.put(s.failed, t.id, ops.get(s.failed, t.id))",
    ),
    Mutant(
        "expiry_one_tick_late",
        "expire_pending treats a pending transfer as due only after its expiry time",
        "kernel_expire",
        KERNEL,
        "ops.get(s.transfer_status, p) == STATUS_PENDING, expires_at != 0, expires_at <= ts",
        "ops.get(s.transfer_status, p) == STATUS_PENDING, expires_at != 0, expires_at < ts",
    ),
    Mutant(
        "totalmap_keeps_stale_entry",
        "TotalMap.set does not write a value equal to the default (ConcreteOps bug)",
        "total_map_laws",
        OPS,
        "            entries.pop(key, None)\n",
        "            pass\n",
    ),
    Mutant(
        "balancing_ignores_pending_debits",
        "engine._balanced forgets the debit account's pending debits when computing room",
        "engine_balanced",
        ENGINE,
        "max(0, dr.credits_posted - dr.debits_posted - dr.debits_pending)",
        "max(0, dr.credits_posted - dr.debits_posted)",
    ),
    Mutant(
        "credits_overflow_off_by_one",
        "engine._overflow_check lets the credit account's total pass AMOUNT_MAX by one",
        "engine_overflow_check",
        ENGINE,
        "if cr.credits_pending - released + cr.credits_posted + amount > AMOUNT_MAX:",
        "if cr.credits_pending - released + cr.credits_posted + amount > AMOUNT_MAX + 1:",
    ),
    Mutant(
        "fits_ignores_pending_debits",
        "engine._debit_short forgets pending debits, so a hold plus a debit can overdraw",
        "engine_fits",
        ENGINE,
        "dr.flags & _DR_GUARD and dr.debits_pending + dr.debits_posted + amount"
        " > dr.credits_posted",
        "dr.flags & _DR_GUARD and dr.debits_posted + amount > dr.credits_posted",
    ),
    Mutant(
        "void_zero_amount_refused",
        "engine._field_check refuses a void with amount zero (the kernel allows it)",
        "engine_field_check",
        ENGINE,
        "if not flags & _VOID and t.amount == 0:",
        "if t.amount == 0:",
    ),
    Mutant(
        "engine_expiry_one_tick_late",
        "engine._pending_check lets a post through at exactly the expiry time",
        "engine_pending_check",
        ENGINE,
        "(expires_at != 0 and expires_at <= ts)",
        "(expires_at != 0 and expires_at < ts)",
    ),
    Mutant(
        "allocation_exact_fit_refused",
        "allocate refuses a request the layers cover exactly (`<=` turned into `<`)",
        "allocation_waterfall",
        ALLOCATE,
        "allowed = request <= total",
        "allowed = request < total",
    ),
    Mutant(
        "later_layer_drawn_first",
        "allocate draws the layers in reverse plan order (later credits before earlier room)",
        "allocation_waterfall",
        ALLOCATE,
        "fill(ops, request, rooms)",
        "fill(ops, request, rooms[::-1])[::-1]",
    ),
    Mutant(
        "partly_usable_layer_skipped",
        "fill skips a layer that cannot cover all that is left, though it still has room",
        "fill_waterfall",
        ALLOCATE,
        "take = ops.ite(left < room, left, room)",
        "take = ops.ite(left < room, 0, room)",
    ),
)


def _copy_project(into: Path) -> None:
    for package in ("ledger", "specs", "proofs"):
        shutil.copytree(
            ROOT / package, into / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


def plant(mutant: Mutant, root: Path) -> None:
    """Write the seeded bug into the copy at `root` (the pattern must occur exactly once)."""
    path = root / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: pattern found {count} times in {mutant.path}")
    path.write_text(text.replace(mutant.old, mutant.new))


def run_mutants(
    mutants: Sequence[Mutant] = MUTANTS, budget: Budget = DEFAULT_BUDGET
) -> list[MutantOutcome]:
    """Each seeded bug in a fresh temporary copy of the project; `killed_by` lists the contracts
    CrossHair refuted (with the counterexample after ' | ')."""

    def one(mutant: Mutant) -> MutantOutcome:
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"crosshair-{mutant.name}-") as scratch:
            root = Path(scratch)
            _copy_project(root)
            plant(mutant, root)
            (target,) = [t for t in targets_of(MODULE, root) if t.function == mutant.target]
            outcomes = check_target(target, budget, root)
        killed = tuple(
            f"{o.obligation} | {o.detail}"
            for o in outcomes
            if o.detail.startswith(("counterexample", "exception found"))
        )
        return MutantOutcome(
            f"{CHECKER}.{mutant.name}",
            f"{mutant.description} ({mutant.path}; must be refuted by {mutant.target})",
            killed,
            round(time.monotonic() - start, 3),
        )

    return _side_by_side(one, mutants)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--mutants"]:
        names = set(args[1:])
        chosen = [m for m in MUTANTS if not names or m.name in names]
        failed = 0
        for m in run_mutants(chosen):
            failed += not m.killed
            print(f"{'KILLED  ' if m.killed else 'SURVIVED'} {m.name} ({m.seconds:.1f}s)")
            for k in m.killed_by:
                print(f"    {k}")
        return 1 if failed else 0
    outcomes = run(args or None)
    for o in outcomes:
        print(f"{'holds' if o.holds else 'FAILS'} {o.obligation} ({o.seconds:.1f}s): {o.detail}")
    return 0 if all(o.holds for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

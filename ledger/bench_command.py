"""`tollgate bench`: run the scripts in a clone's bench/ folder and gather their figures.

The scripts are not part of the installed package (they start servers, import peers such as
`limits`, and are read as the record of how each figure was measured), so the command runs them
from the repository: `./bench` or `--dir`. Each runs in its own process with this interpreter;
its JSON lines pass through to stdout unchanged (shared BENCH conventions), its notes go to
stderr, and a summary table follows on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS: dict[str, tuple[str, ...]] = {
    "core": ("--batches", "3", "--runs", "1"),
    "store": ("--batches", "2", "--singles", "20", "--runs", "1", "--no-postgres"),
    "decide": ("--quick",),
    "decide_floor": ("--customers", "1000", "--decisions", "20000", "--runs", "1"),
    "settle": ("--events", "1000", "--runs", "1", "--no-postgres"),
    "settle_floor": ("--events", "1000", "--runs", "1"),
    "settle_windows": ("--events", "500", "--runs", "1"),
    "http": ("--quick",),
    "simulate": ("--steps", "300", "--runs", "1", "--processes", "1"),
    "restore": ("--users", "10", "--hours", "24", "--runs", "1"),
    "grown_tables": ("--events", "2000", "--runs", "1", "--repeat", "3"),
}
"""Each script, with the arguments `--quick` gives it (small counts: a smoke test)."""


class BenchError(Exception):
    """The command cannot run as asked (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    returncode: int
    figures: list[dict[str, Any]]


def scripts_to_run(names: list[str], folder: Path) -> list[tuple[str, Path]]:
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        raise BenchError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SCRIPTS)}")
    chosen = names or list(SCRIPTS)
    found = [(n, folder / f"{n}.py") for n in chosen]
    missing = [str(path) for _, path in found if not path.is_file()]
    if missing:
        raise BenchError(
            f"no script {missing[0]}: run from a clone of the repository (its bench/ folder "
            "holds the scripts) or name the folder with --dir"
        )
    return found


def run_script(name: str, script: Path, quick: bool) -> Outcome:
    """Run one script; its JSON lines are echoed to stdout as they come."""
    root = script.parent.parent
    paths = [str(root), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    argv = [sys.executable, str(script), *(SCRIPTS[name] if quick else ())]
    figures: list[dict[str, Any]] = []
    with subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("{"):
                figures.append(json.loads(line))
    return Outcome(name, proc.returncode, figures)

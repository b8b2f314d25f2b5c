# SPDX-License-Identifier: MIT
"""The mutation gate (``make mutants``): cosmic-ray over daytime_sd/, scoped to finish
within an hour on a 2-core machine.

Each scope is one module and the tests that must kill its mutants: the pure modules with
their unit tests, clock.py also with its one real read of the kernel (and one refused by a
seccomp filter), and the I/O module activation.py with a fast subset of the integration
tests (real processes and sockets).  cosmic-ray mutates files on disk, so everything runs
in a copy of the tree in a temporary directory: the checkout is never touched, and other
work in it (or the service started from it) never sees a mutant.

Mutants listed in ``equivalent.toml`` (module, line, column, operator, and the source
line, so an entry goes stale when the code under it changes) are marked skipped before
the run, with the reason recorded there.  The result goes to ``results.md`` beside this
script: the score per scope and every survivor.  Exit status 1 if any mutant survives
that is not listed as equivalent, or if an equivalent entry is stale.

    tests/mutation/mutants.py [--scope NAME ...] [--out FILE] [--keep]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PYTEST = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly"


@dataclass
class Scope:
    name: str
    module: str
    tests: str  # pytest arguments
    timeout: float  # per mutant; a mutant that hangs the tests is killed by it
    lines: tuple[int, int] | None = None  # only mutants on these lines (inclusive)


def _lines_of(module: str, first: str, last: str) -> tuple[int, int]:
    """Line range from the line starting with ``first`` to the one before ``last``."""
    text = (REPO / module).read_text().splitlines()
    start = next(i for i, line in enumerate(text, 1) if line.startswith(first))
    end = next(i for i, line in enumerate(text, 1) if i > start and line.startswith(last))
    return start, end - 1


def scopes() -> list[Scope]:
    integration = "tests/integration"
    return [
        Scope("protocol", "daytime_sd/protocol.py",
              "tests/unit/test_protocol.py tests/unit/test_config.py", 60),
        Scope("config", "daytime_sd/config.py", "tests/unit/test_config.py", 60),
        Scope("netaddr", "daytime_sd/netaddr.py", "tests/unit/test_netaddr.py", 60),
        Scope("udp-limiter", "daytime_sd/udp.py",
              "tests/unit/test_udp_limiter.py tests/unit/test_udp_reply_source.py", 60,
              _lines_of("daytime_sd/udp.py", "def source_key", "class DatagramResponder")),
        Scope("closing", "daytime_sd/closing.py", "tests/unit/test_closing.py", 60),
        # 5 s: the tests take a fraction of one, and some 40 mutants loop in dst_code().
        Scope("nist", "daytime_sd/nist.py",
              "tests/unit/test_nist.py tests/unit/test_leap_list.py", 5),
        Scope("clock", "daytime_sd/clock.py",
              "tests/unit/test_clock.py tests/integration/test_clock_read.py", 60),
        Scope("activation", "daytime_sd/activation.py",
              f"tests/unit/test_activation_env.py {integration}/test_activation.py "
              f"{integration}/test_observability.py "
              f"{integration}/test_wire.py -k 'test_activation or listen_variables or missing "
              "or ipv4_mapped or (inetd and ctime-JST) or (talkative and inetd)'", 240),
    ]  # fmt: skip


@dataclass
class Outcome:
    scope: Scope
    killed: int = 0
    survived: list[dict[str, object]] = field(default_factory=list)
    equivalent: list[dict[str, object]] = field(default_factory=list)
    out_of_scope: int = 0
    incompetent: int = 0
    seconds: float = 0.0

    @property
    def score(self) -> float:
        counted = self.killed + len(self.survived)
        return self.killed / counted if counted else 1.0


def copy_tree(into: Path) -> None:
    """The files the tests need, as they are in the working tree."""
    for name in ("daytime_sd", "tests"):
        if (REPO / name).exists():
            skip = shutil.ignore_patterns("__pycache__", ".hypothesis")
            shutil.copytree(REPO / name, into / name, ignore=skip)
    shutil.copy2(REPO / "pyproject.toml", into / "pyproject.toml")


def cosmic(*args: str, cwd: Path) -> str:
    exe = Path(sys.executable).with_name("cosmic-ray")
    proc = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cosmic-ray {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def load_equivalents() -> list[dict[str, object]]:
    path = HERE / "equivalent.toml"
    if not path.exists():
        return []
    with path.open("rb") as f:
        entries = list(tomllib.load(f).get("equivalent", []))
    # Two entries for one mutant: one of them lost its place when code moved (re-anchoring
    # by source line finds the same line twice), and the mutant it was for goes unmarked.
    keys = [(e["module"], e["line"], e["col"], e["operator"], e.get("nth", 0)) for e in entries]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        sys.exit(f"{path}: more than one entry for {', '.join(twice)}")
    return entries


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the annotations are, if the module never evaluates them (PEP 563)."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not lazy:
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    return [
        ((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in found
    ]


ANNOTATION = (
    "in an annotation, which the module never evaluates (from __future__ import annotations)"
)


def mark(db: Path, scope: Scope, equivalents: list[dict[str, object]], tree: Path) -> set[str]:
    """Mark equivalent and out-of-scope mutants skipped; return the stale entries."""
    # Imported here, and untyped: cosmic-ray is installed by `make mutants` only.
    work_db_mod = importlib.import_module("cosmic_ray.work_db")
    item_mod = importlib.import_module("cosmic_ray.work_item")
    skipped = item_mod.WorkerOutcome.SKIPPED
    text = (tree / scope.module).read_text()
    source = text.splitlines()
    annotations = annotation_spans(text)
    mine = {
        (int(str(e["line"])), int(str(e["col"])), str(e["operator"]), int(str(e.get("nth", 0)))): e
        for e in equivalents
        if e["module"] == scope.module
    }
    used: set[tuple[int, int, str, int]] = set()
    with work_db_mod.use_db(str(db), work_db_mod.WorkDB.Mode.open) as work_db:
        items = sorted(work_db.pending_work_items, key=lambda i: i.mutations[0].occurrence)
        seen: dict[tuple[int, int, str], int] = {}
        for item in items:
            (mutation,) = item.mutations
            line, col = mutation.start_pos
            at = (line, col, mutation.operator_name)
            seen[at] = nth = seen.get(at, -1) + 1  # the nth mutant of this operator here
            key = (*at, nth)
            if scope.lines and not scope.lines[0] <= line <= scope.lines[1]:
                output = "out of scope"
            elif any(start <= (line, col) < end for start, end in annotations):
                output = f"equivalent: {ANNOTATION}"
            elif key in mine and source[line - 1].strip() == str(mine[key]["code"]).strip():
                used.add(key)
                output = f"equivalent: {mine[key]['reason']}"
            else:
                continue
            result = item_mod.WorkResult(worker_outcome=skipped, output=output)
            work_db.set_result(item.job_id, result)
    return {f"{scope.module}:{line}:{col} {op} #{nth}" for line, col, op, nth in mine.keys() - used}


def run_scope(
    scope: Scope, tree: Path, equivalents: list[dict[str, object]]
) -> tuple[Outcome, set[str]]:
    started = time.monotonic()
    config = tree / f"{scope.name}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{scope.module}"\n'
        f"timeout = {scope.timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(f'{PYTEST} {scope.tests}')}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    db = tree / f"{scope.name}.sqlite"
    # The unmutated tree must pass first, or every mutant would look killed.
    baseline = subprocess.run(f"{PYTEST} {scope.tests}", shell=True, cwd=tree,
                              capture_output=True, text=True)  # fmt: skip
    if baseline.returncode != 0:
        raise SystemExit(f"{scope.name}: the tests fail without any mutant:\n{baseline.stdout}")
    cosmic("init", str(config), str(db), cwd=tree)
    stale = mark(db, scope, equivalents, tree)
    cosmic("exec", str(config), str(db), cwd=tree)
    outcome = Outcome(scope)
    rows = [json.loads(row) for row in cosmic("dump", str(db), cwd=tree).splitlines()]
    rows.sort(key=lambda row: int(row[0]["mutations"][0]["occurrence"]))
    seen: dict[tuple[int, int, str], int] = {}
    for item, result in rows:
        (mutation,) = item["mutations"]
        at = (mutation["start_pos"][0], mutation["start_pos"][1], mutation["operator_name"])
        seen[at] = seen.get(at, -1) + 1
        changed = [
            line for line in ((result or {}).get("diff") or "").splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]  # fmt: skip
        where = {
            "line": at[0], "col": at[1], "operator": at[2], "nth": seen[at],
            "change": " / ".join(line.strip() for line in changed if line.startswith("+")),
        }  # fmt: skip
        if result is None:
            raise SystemExit(f"{scope.name}: a mutant was not run: {where}")
        if result["worker_outcome"] == "skipped":
            if str(result["output"]).startswith("equivalent"):
                outcome.equivalent.append(where)
            else:
                outcome.out_of_scope += 1
        elif result["test_outcome"] == "incompetent":
            outcome.incompetent += 1
        elif result["test_outcome"] == "survived":
            outcome.survived.append(where)
        else:
            outcome.killed += 1
    outcome.seconds = time.monotonic() - started
    return outcome, stale


def source_line(module: str, line: int) -> str:
    return (REPO / module).read_text().splitlines()[line - 1].strip()


def report(outcomes: list[Outcome], stale: set[str]) -> str:
    out = [
        "# Mutation gate results (`make mutants`)",
        "",
        f"cosmic-ray over daytime_sd/, run {time.strftime('%Y-%m-%d')} on "
        f"{os.cpu_count()} cores; see tests/mutation/mutants.py for the scopes and "
        "tests/mutation/equivalent.toml for the mutants that cannot be killed and why.",
        "",
        "| scope | module | tests | killed | survived | equivalent | out of scope | score | "
        "minutes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        tests = o.scope.tests.replace("|", "\\|")
        out.append(
            f"| {o.scope.name} | `{o.scope.module}` | `{tests}` | {o.killed} | "
            f"{len(o.survived)} | {len(o.equivalent)} | {o.out_of_scope} | "
            f"{o.score:.1%} | {o.seconds / 60:.1f} |"
        )
    killed = sum(o.killed for o in outcomes)
    survived = sum(len(o.survived) for o in outcomes)
    total = killed + survived
    out += ["", f"**Score: {killed}/{total} = {killed / total if total else 1:.1%}** of the "
            "mutants that are not equivalent were killed.", ""]  # fmt: skip
    out.append("## Survivors")
    out.append("")
    if not survived:
        out.append("None.")
    for o in outcomes:
        for s in o.survived:
            code = source_line(o.scope.module, int(str(s["line"])))
            where = f"{o.scope.module}:{s['line']}:{s['col']}"
            out.append(f"- `{where}` {s['operator']} #{s['nth']}: `{code}` → `{s['change']}`")
    if stale:
        out += ["", "## Stale equivalent entries (the code changed under them)", ""]
        out += [f"- {key}" for key in sorted(stale)]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [s.name for s in scopes()]
    parser.add_argument("--scope", action="append", choices=names, help="only these scopes")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree")
    args = parser.parse_args()
    chosen = [s for s in scopes() if not args.scope or s.name in args.scope]
    equivalents = load_equivalents()
    tree = Path(tempfile.mkdtemp(prefix="daytime-sd-mutants-"))
    outcomes: list[Outcome] = []
    stale: set[str] = set()
    keep = args.keep
    try:
        copy_tree(tree)
        for scope in chosen:
            print(f"mutants: {scope.name} ({scope.module}) ...", flush=True)
            outcome, scope_stale = run_scope(scope, tree, equivalents)
            stale |= scope_stale
            outcomes.append(outcome)
            print(f"mutants: {scope.name}: {outcome.killed} killed, {len(outcome.survived)} "
                  f"survived, {len(outcome.equivalent)} equivalent, score {outcome.score:.1%}, "
                  f"{outcome.seconds / 60:.1f} min", flush=True)  # fmt: skip
    except BaseException:
        keep = True  # what ran so far is in the session databases there
        raise
    finally:
        if keep:
            print(f"mutants: tree kept in {tree}", flush=True)
        else:
            shutil.rmtree(tree, ignore_errors=True)
    text = report(outcomes, stale)
    args.out.write_text(text)
    print(text)
    return 1 if any(o.survived for o in outcomes) or stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a small run costs beyond its training: fnnet's commands timed end to end, side by side.

Each case is one ``fnnet`` command run as a fresh process (``python -m fnnet …``), *cold*
(``--no-compile-cache``: every program compiled) and *warm* (a persistent compilation cache
filled by one run before), ``--repeats`` times, the cases interleaved so that load from others
on the machine hits them alike. Per run it records the process's wall time (as the shell
sees it) and the command's own breakdown (``--out``'s ``summary.time``: start-up, data, init,
training, evaluation, compile with the number of programs, other; and the init with the
compiling inside it, where the tree reports it). Medians are reported.

``--tree DIR`` (repeatable) runs the same cases on other checkouts of fnnet too (e.g. a
``git worktree`` of an older commit), each with its own cache, for a before/after in one run.

    python experiments/startup.py                 # digits, deep-conv, Fashion-MNIST, sweeps
    python experiments/startup.py --quick         # a smoke run (tests)
    python experiments/startup.py --tree ../old   # and the same on an older tree

Output: ``experiments/runs/startup.json`` and ``.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, write_results

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, list[str]] = {
    "train digits, 20 epochs": ["train", "--dataset", "digits", "--epochs", "20"],
    "train digits, deep-conv, 1 epoch": ["train", "--dataset", "digits", "--net", "deep-conv",
                                         "--epochs", "1"],
    "train fashion-mnist, 2 epochs": ["train", "--dataset", "fashion-mnist", "--epochs", "2"],
    "sweep digits, 32 trials × 20 epochs": ["sweep", "--dataset", "digits", "--net",
                                           "two-layer", "--trials", "32", "--epochs", "20"],
    "sweep digits, 32 trials × 20 epochs, --sequential": [
        "sweep", "--dataset", "digits", "--net", "two-layer", "--trials", "32", "--epochs", "20",
        "--sequential"],
}
QUICK = {"train digits, 2 epochs": ["train", "--dataset", "digits", "--epochs", "2"]}


def run_once(tree: Path, argv: list[str], *, cold: bool, cache: Path) -> dict[str, Any]:
    """One ``python -m fnnet`` process: its wall time and its own ``summary``."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run.json"
        command = [sys.executable, "-m", "fnnet", *argv, "--no-progress", "--out", str(out)]
        if cold:
            command.append("--no-compile-cache")
        env = {**os.environ, "PYTHONPATH": str(tree), "FNNET_COMPILE_CACHE": str(cache),
               "JAX_PLATFORMS": "cpu"}
        begin = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=900)
        wall = time.perf_counter() - begin
        if done.returncode != 0:
            return {"wall_s": wall, "error": done.stderr.strip().splitlines()[-1:]}
        summary = json.loads(out.read_text()).get("summary") or {}
        return {"wall_s": wall, "summary": summary}


def _median(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


def _median_init(runs: list[dict[str, Any]]) -> float | None:
    """The init part with the compiling inside it (``summary.time``'s ``init_s`` and
    ``compile_in_s.init``); None where a run does not report them (an older tree)."""
    values = []
    for run in runs:
        time_ = (run.get("summary") or {}).get("time") or {}
        if "init_s" in time_ and "init" in time_.get("compile_in_s", {}):
            values.append(time_["init_s"] + time_["compile_in_s"]["init"])
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another fnnet checkout to time the same way (repeatable)")
    parser.add_argument("--case", action="append", default=None, choices=list(CASES),
                        help="only these cases (default: all)")
    parser.add_argument("--quick", action="store_true", help="one tiny case, one repeat")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else {name: CASES[name] for name in (args.case or CASES)}
    repeats = 1 if args.quick else args.repeats
    trees = [ROOT, *(tree.resolve() for tree in args.tree)]
    load_start = list(os.getloadavg())
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as caches:
        for t, tree in enumerate(trees):  # fill each tree's warm cache once
            for case in cases.values():
                run_once(tree, case, cold=False, cache=Path(caches) / str(t))
        for _ in range(repeats):
            for t, tree in enumerate(trees):
                for name, case in cases.items():
                    for mode in ("cold", "warm"):
                        runs.setdefault((str(tree), name, mode), []).append(
                            run_once(tree, case, cold=mode == "cold",
                                     cache=Path(caches) / str(t)))
    rows = []
    for (tree, name, mode), results in runs.items():
        rows.append({
            "tree": tree, "case": name, "mode": mode, "runs": results,
            "wall_s": _median(results, "wall_s"),
            "startup_s": _median(results, "summary", "time", "startup_s"),
            "compile_s": _median(results, "summary", "time", "compile_s")
            or _median(results, "summary", "compile_s"),
            "programs": _median(results, "summary", "time", "programs"),
            "init_s": _median_init(results),
            "training_s": _median(results, "summary", "time", "training_s")
            or _median(results, "summary", "train_s"),
            "errors": [r["error"] for r in results if "error" in r]})
    result = {"repeats": repeats, "cases": cases, "rows": rows,
              "loadavg_start": load_start, "loadavg_end": list(os.getloadavg())}
    table = ["| tree | case | mode | wall s | start-up s | compile s (programs) | init s with "
             "its compile | training s |", "|---|---|---|---|---|---|---|---|"]

    def cell(value: float | None, digits: int = 2) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    for row in rows:
        programs = "" if row["programs"] is None else f" ({row['programs']:.0f})"
        table.append(f"| {Path(row['tree']).name} | {row['case']} | {row['mode']} | "
                     f"{cell(row['wall_s'])} | {cell(row['startup_s'])} | "
                     f"{cell(row['compile_s'])}{programs} | {cell(row['init_s'])} | "
                     f"{cell(row['training_s'])} |")
    table.append(f"\nMedians of {repeats}; load average {load_start[0]:.2f} at the start, "
                 f"{result['loadavg_end'][0]:.2f} at the end.")
    out = args.out or RESULTS / ("startup_quick.json" if args.quick else "startup.json")
    write_results(out, result, "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The "user's own loop": fnnet's manual and autodiff nets inside the plainest training loop.

Not fnnet's ``make_epoch`` (no unroll, no fused step, no loss outputs) but what a user writes
from the README: ``model.loss`` of :func:`fnnet.two_layer_net` (784-50-10, batch 100) inside one
jitted ``lax.scan`` over an epoch's index batches, each step
``jax.grad(model.loss)(p, X[batch], T[batch])`` followed by a plain SGD ``jax.tree.map``.

The manual (hand ``custom_vjp`` rules) and autodiff (``jax.grad`` of the references) nets run
the same epochs from the same initial parameters, **alternating** (manual first in even runs,
autodiff first in odd ones) so that load from others on the machine hits both alike; the
median over ``--runs`` and the per-pair ratio are reported. Each is compiled ahead
(``lower().compile()``, timed apart) and warmed up once before timing.

It also counts, from the compiled HLO, what each step runs: the top-level instructions of the
scan's loop body (fusions, dots, custom fusions, gathers…) and of ``jax.jit(jax.grad(loss))``
alone — the kernels XLA launches per step.

    python experiments/user_loop.py                     # relu, 5 runs of 3 epochs
    python experiments/user_loop.py --activation sigmoid --runs 7

Output: ``experiments/runs/user_loop-<activation>-<labels>.json`` and ``.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS, write_results

import fnnet
from fnnet.data import DatasetError, load_dataset

GRADS = ("manual", "autodiff")


def user_epoch(loss, lr: float):
    """The user's epoch: ``scan`` over batches of ``grad(loss)`` + SGD ``tree.map``, jitted."""

    @jax.jit
    def epoch(params, X, T, batches):
        def step(p, batch):
            g = jax.grad(loss)(p, X[batch], T[batch])
            return jax.tree.map(lambda w, d: w - lr * d, p, g), None

        return jax.lax.scan(step, params, batches)[0]

    return epoch


# --------------------------------------------------------------------------- HLO counts

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%\S+\s*=\s*.+?\s([a-z][\w-]*)\(")
_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def _computation(hlo: str, header: re.Pattern[str]) -> list[str]:
    """The instruction lines of the first computation whose header matches ``header``."""
    lines = hlo.splitlines()
    for i, line in enumerate(lines):
        if header.search(line):
            body = []
            for inner in lines[i + 1:]:
                if inner.startswith("}"):
                    return body
                body.append(inner)
    raise ValueError(f"no computation matching {header.pattern!r}")


def count_ops(lines: list[str]) -> dict[str, Any]:
    """Opcode counts of a computation's instructions; ``kernels`` leaves out the ones that
    launch nothing (parameters, constants, tuples, bitcasts)."""
    ops: collections.Counter[str] = collections.Counter()
    for line in lines:
        match = _INSTRUCTION.match(line)
        if match:
            op = match.group(1)
            if op == "fusion":
                kind = re.search(r"kind=(k\w+)", line)
                op = f"fusion:{kind.group(1) if kind else '?'}"
            ops[op] += 1
    kernels = sum(n for op, n in ops.items() if op not in _FREE)
    return {"kernels": kernels, "ops": dict(sorted(ops.items()))}


def loop_body_counts(compiled_hlo: str) -> dict[str, Any]:
    """Counts of the scan's while-loop body (one step), the largest ``while`` body."""
    bodies = re.findall(r"while\(.*?body=(%[\w.-]+)", compiled_hlo)
    if not bodies:
        raise ValueError("no while loop in the compiled epoch")
    best = None
    for name in set(bodies):
        lines = _computation(compiled_hlo, re.compile(rf"^{re.escape(name)} "))
        counts = count_ops(lines)
        if best is None or counts["kernels"] > best["kernels"]:
            best = counts
    return best


def grad_counts(compiled_hlo: str) -> dict[str, Any]:
    """Counts of the ENTRY computation of ``jit(grad(loss))``."""
    return count_ops(_computation(compiled_hlo, re.compile(r"^ENTRY ")))


# --------------------------------------------------------------------------- kernel times

_NOT_KERNELS = ("ThunkExecutor", "ThreadpoolListener", "end: ", "$", "PjitFunction", "while",
                "CommonPjRt", "Pjit", "TfrtCpu")


def kernel_times(run_epoch, rounds: int, trace_dir: Path) -> dict[str, float]:
    """Median µs of each kernel (thunk) of the step, from a ``jax.profiler`` trace of
    ``rounds`` epochs: the per-kernel view that run-to-run noise of whole epochs hides."""
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        for _ in range(rounds):
            jax.block_until_ready(run_epoch())
    trace_file = max(trace_dir.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    with gzip.open(trace_file) as file:
        events = json.load(file)
    events = events["traceEvents"] if isinstance(events, dict) else events
    durations: dict[str, list[float]] = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(_NOT_KERNELS):
            durations[event["name"]].append(event["dur"])
    most = max(len(d) for d in durations.values())
    return {name: statistics.median(d) for name, d in sorted(durations.items())
            if len(d) == most}  # kernels of the loop body run once per step


def kernel_summary(times: dict[str, float]) -> dict[str, float]:
    """Per-kernel medians summed by kind: matmuls (dots and YNN fusions), gathers, the rest."""
    def kind(name: str) -> str:
        if name.startswith(("dot", "ynn_fusion")):
            return "matmul_and_ynn"
        return "gather" if "gather" in name else "other"

    summary = collections.Counter()
    for name, us in times.items():
        summary[kind(name)] += us
    return {**dict(summary), "sum": sum(times.values()), "kernels": len(times)}


# --------------------------------------------------------------------------- running


def load(dataset: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Training images ``(N, 784)`` float32 and int32 labels; synthetic if the files are absent."""
    if dataset == "fashion-mnist":
        try:
            data = load_dataset("fashion-mnist", download=False, progress=False)
            return data.x_train, data.t_train.astype(np.int32), "fashion-mnist"
        except DatasetError:
            pass
    rng = np.random.default_rng(seed)
    return (rng.random((60_000, 784), dtype=np.float32),
            rng.integers(0, 10, 60_000).astype(np.int32), "random")


def run(args: argparse.Namespace) -> dict[str, Any]:
    X_np, T_np, source = load(args.dataset, args.seed)
    rng = np.random.default_rng(args.seed)
    per_epoch = len(X_np) // args.batch
    batches_np = np.concatenate([
        rng.permutation(len(X_np))[:per_epoch * args.batch].reshape(per_epoch, args.batch)
        for _ in range(args.epochs)]).astype(np.int32)
    if args.labels == "onehot":
        T_np = np.eye(10, dtype=np.float32)[T_np]
    X, T, batches = jax.device_put((X_np, T_np, batches_np))
    steps = len(batches_np)

    models = {g: fnnet.two_layer_net(784, args.hidden, 10, activation=args.activation, grads=g)
              for g in GRADS}
    params0 = models["manual"].init(jax.random.key(args.seed))
    compiled, compile_s, counts = {}, {}, {}
    for g, model in models.items():
        start = time.perf_counter()
        compiled[g] = user_epoch(model.loss, args.lr).lower(params0, X, T, batches).compile()
        compile_s[g] = time.perf_counter() - start
        jax.block_until_ready(compiled[g](params0, X, T, batches))  # warm-up
        grad_hlo = jax.jit(jax.grad(model.loss)).lower(
            params0, X[:args.batch], T[:args.batch]).compile().as_text()
        counts[g] = {"loop_body": loop_body_counts(compiled[g].as_text()),
                     "grad_only": grad_counts(grad_hlo)}

    seconds: dict[str, list[float]] = {g: [] for g in GRADS}
    cpu_seconds: dict[str, list[float]] = {g: [] for g in GRADS}
    finals = {}
    for r in range(args.runs):
        for g in (GRADS if r % 2 == 0 else GRADS[::-1]):
            start, cpu_start = time.perf_counter(), time.process_time()
            finals[g] = jax.block_until_ready(compiled[g](params0, X, T, batches))
            seconds[g].append(time.perf_counter() - start)
            cpu_seconds[g].append(time.process_time() - cpu_start)
    profile = {}
    if args.profile:
        per_round: dict[str, list[dict[str, float]]] = {g: [] for g in GRADS}
        # The first trace of a process runs slower (profiler start-up): one thrown away.
        kernel_times(lambda: compiled["manual"](params0, X, T, batches), 1,
                     Path(args.trace_dir) / "warm-up")
        for r in range(args.profile):
            for g in (GRADS if r % 2 == 0 else GRADS[::-1]):
                per_round[g].append(kernel_times(
                    lambda g=g: compiled[g](params0, X, T, batches), 1,
                    Path(args.trace_dir) / f"{g}-{r}"))
        for g in GRADS:
            times = {k: statistics.median(rnd[k] for rnd in per_round[g])
                     for k in per_round[g][0]}
            profile[g] = {"kernel_us": times, "summary": kernel_summary(times)}
    rates = {g: [steps / s for s in seconds[g]] for g in GRADS}
    cpu_us = {g: [1e6 * s / steps for s in cpu_seconds[g]] for g in GRADS}
    ratios = [m / a for m, a in zip(rates["manual"], rates["autodiff"], strict=True)]
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(finals["manual"]), jax.tree.leaves(finals["autodiff"]), strict=True))
    return {
        "settings": {"net": f"two_layer_net(784, {args.hidden}, 10)",
                     "activation": args.activation, "batch": args.batch, "lr": args.lr,
                     "epochs_per_run": args.epochs, "steps_per_run": steps, "runs": args.runs,
                     "data": source, "labels": args.labels, "seed": args.seed, "unroll": 1},
        "steps_per_s": rates,
        "median_steps_per_s": {g: statistics.median(rates[g]) for g in GRADS},
        "manual_over_autodiff_per_pair": ratios,
        "median_ratio": statistics.median(ratios),
        "cpu_us_per_step": cpu_us,
        "median_cpu_us_per_step": {g: statistics.median(cpu_us[g]) for g in GRADS},
        "manual_slower_in_pairs": sum(x < 1 for x in ratios),
        "compile_s": compile_s,
        "hlo_counts": counts,
        "kernel_profile": profile,
        "max_abs_param_diff_after_training": diff,
        "environment": {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                        "cores": len(os.sched_getaffinity(0)),
                        "loadavg_start": args.load_start, "loadavg_end": list(os.getloadavg())},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def markdown(result: dict[str, Any]) -> str:
    s, env = result["settings"], result["environment"]
    lines = [
        f"# The user's own loop: {s['net']} {s['activation']}, batch {s['batch']}",
        "",
        f"`jax.grad(model.loss)` + SGD `tree.map` in one jitted `lax.scan` (unroll 1), "
        f"{s['steps_per_run']:,} steps per run, {s['runs']} alternating runs; "
        f"data: {s['data']}, {s['labels']} labels.",
        "",
        "| grads | median steps/s | runs (steps/s) | compile s | kernels/step (scan body) "
        "| kernels (jit(grad(loss))) | median process CPU µs/step |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for g in GRADS:
        c = result["hlo_counts"][g]
        lines.append(
            f"| {g} | {result['median_steps_per_s'][g]:,.0f} "
            f"| {', '.join(f'{x:,.0f}' for x in result['steps_per_s'][g])} "
            f"| {result['compile_s'][g]:.2f} | {c['loop_body']['kernels']} "
            f"| {c['grad_only']['kernels']} | {result['median_cpu_us_per_step'][g]:,.1f} |")
    load = " → ".join(f"{x[0]:.1f}" for x in (env["loadavg_start"], env["loadavg_end"]))
    lines += [
        "",
        f"manual / autodiff: median {result['median_ratio']:.3f} "
        f"(per pair {', '.join(f'{x:.3f}' for x in result['manual_over_autodiff_per_pair'])}; "
        f"manual slower in {result['manual_slower_in_pairs']} of {s['runs']}). "
        f"Max |Δparam| after training: {result['max_abs_param_diff_after_training']:.2e}.",
        "",
        f"- ops per step, manual: {result['hlo_counts']['manual']['loop_body']['ops']}",
        f"- ops per step, autodiff: {result['hlo_counts']['autodiff']['loop_body']['ops']}",
        f"- {env['device']}, {env['cores']} cores, 1-min load {load}; jax {env['jax']}; "
        f"{result['date']}",
    ]
    if result["kernel_profile"]:
        lines += ["", "Per-kernel medians from a `jax.profiler` trace (µs per step; the sum leaves "
                  "out the waits between kernels):", "",
                  "| grads | kernels | matmuls + YNN | gathers | other | sum |",
                  "|---|---:|---:|---:|---:|---:|"]
        for g in GRADS:
            k = result["kernel_profile"][g]["summary"]
            lines.append(f"| {g} | {k['kernels']} | {k.get('matmul_and_ynn', 0):.1f} "
                         f"| {k.get('gather', 0):.1f} | {k.get('other', 0):.1f} "
                         f"| {k['sum']:.1f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activation", choices=("relu", "sigmoid", "tanh"), default="relu")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    parser.add_argument("--runs", type=int, default=5, help="alternating timed runs per net")
    parser.add_argument("--dataset", choices=("fashion-mnist", "random"),
                        default="fashion-mnist")
    parser.add_argument("--labels", choices=("int", "onehot"), default="int",
                        help="class indices (N,) or one-hot float rows (N, 10), as the book's "
                             "load_mnist(one_hot_label=True)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="ROUNDS",
                        help="also trace ROUNDS alternating epochs per net with jax.profiler "
                             "and report per-kernel median times (default: 0, off)")
    parser.add_argument("--trace-dir", default="/tmp/fnnet-user-loop-traces",
                        help="where the --profile traces go")
    parser.add_argument("--out", type=Path,
                        help="JSON path (default: runs/user_loop-<activation>-<labels>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_start = list(os.getloadavg())
    result = run(args)
    write_results(args.out or RESULTS / f"user_loop-{args.activation}-{args.labels}.json",
                  result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark one epoch of the book's SimpleConvNet: fnnet's hand rules vs ``lax.conv`` autodiff
vs the book's NumPy im2col layers, side by side in one run (issue 10's speed target).

Every row trains ``simple_conv_net`` (conv 30×5×5 → ReLU → pool 2×2 → affine 100 → ReLU →
affine 10) from the same initial parameters (fnnet's init, N(0, 0.01²)) on the same batches
(one ``(steps, 100)`` index matrix, a fresh permutation per epoch, seeded) with the book's Adam
(lr 0.001), so all rows compute the same thing and reach the same test accuracy:

* ``fnnet-manual-scan``: ``grads="manual"`` — im2col + matmul forward, the hand-written col2im
  and argmax-routing backward rules (custom_vjp); the epoch is one ``lax.scan``
  (:func:`fnnet.train.make_epoch`);
* ``fnnet-autodiff-scan``: ``grads="autodiff"`` — ``lax.conv_general_dilated`` and
  ``lax.reduce_window`` differentiated by ``jax.grad``; the same scan;
* ``numpy-book-conv-<N>t``: the book's layer classes in NumPy float32
  (``experiments/peers/numpy_book_conv.py``), a Python loop over the steps, with N BLAS
  threads (``--threads``, repeatable; default 1);
* with ``--jit``: ``fnnet-<grads>-jit``, one jitted step per Python iteration.

Timing: JAX rows are compiled ahead (``lower().compile()``, reported as ``compile_s``) and
warmed up (scan: one untimed epoch; jit: one step), then time all steps, synchronised at the
end; the NumPy row's ``compile_s`` is one warm-up step. Repeats run round-robin (every row
once, then again) so that a change in the machine's load hits every row alike; the median is
reported. The 1-minute load average before and after
is recorded: this 2-core machine is shared.

Output: ``experiments/runs/benchmark-<device>-conv[-quick].json`` and ``.md``.

    python experiments/benchmark_conv.py                  # 600 steps (one epoch), 3 repeats
    python experiments/benchmark_conv.py --repeats 1 --threads 1
    python experiments/benchmark_conv.py --quick          # digits, 10 steps: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from benchmark import environment, load_average, make_indices, usable_cores
from common import RESULTS, write_results
from peers import jax_common, numpy_book_conv

from fnnet.data import load_dataset
from fnnet.nets import simple_conv_net
from fnnet.optim import adam
from fnnet.train import evaluate, init_train_state, make_epoch, make_train_step

Trainer = Callable[[Any, np.ndarray, np.ndarray, np.ndarray], tuple[Any, float, float]]


def fnnet_trainer(grads: str, loop: str, input_shape: tuple[int, ...], num_classes: int,
                  lr: float) -> Trainer:
    """A row: ``train(params, x, t, indices) -> (final params, seconds, compile_s)``.

    The scan row compiles its epoch once (the first call's ``compile_s``; later calls reuse
    it and report 0) and runs it once, untimed, on a throwaway state before its first timed
    run: an executable's first call carries one-time costs (on digits, 10 steps: ~150 ms).
    """
    model = simple_conv_net(input_shape, num_classes, grads=grads)
    optimizer = adam(lr)
    compiled: dict[tuple[int, ...], Callable] = {}

    def train(params, x, t, indices):
        def fresh_carry():
            return (init_train_state(model, jax.device_put(params), optimizer),)

        if loop == "jit":
            (final,), seconds, compile_s = jax_common.train_per_step(
                make_train_step(model, optimizer), fresh_carry, x, t, indices)
            return final.params, seconds, compile_s
        x_dev, t_dev, idx_dev = jax.device_put((x, t, indices))
        compile_s = 0.0
        if indices.shape not in compiled:
            run, compile_s = jax_common.compile_ahead(make_epoch(model, optimizer),
                                                      *fresh_carry(), x_dev, t_dev, idx_dev)
            jax.block_until_ready(run(*fresh_carry(), x_dev, t_dev, idx_dev))  # warm-up
            compiled[indices.shape] = run
        carry = jax.block_until_ready(fresh_carry())
        start = time.perf_counter()
        final, _ = jax.block_until_ready(compiled[indices.shape](*carry, x_dev, t_dev, idx_dev))
        return final.params, time.perf_counter() - start, compile_s

    return train


def numpy_trainer(lr: float, threads: int | None) -> Trainer:
    def train(params, x, t, indices):
        return numpy_book_conv.train(numpy_book_conv.as_numpy(params), x, t, indices, lr,
                                     threads=threads)

    return train


def markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table, with the ratios the issue's targets are about."""
    c, env = result["config"], result["environment"]
    lines = [f"# SimpleConvNet, one epoch: fnnet manual vs autodiff vs the book's NumPy "
             f"({env['device']})", "",
             f"{c['dataset']} {c['input_shape']}, conv {c['filters']}×5×5 → pool 2×2 → 100 → "
             f"{c['num_classes']}, the book's Adam lr {c['lr']}, batch {c['batch_size']}, "
             f"{c['steps']:,} steps, median of {c['repeats']} (round-robin).", "",
             "| implementation | µs/step | steps/s | s per epoch (600 steps) | compile s "
             "| final test acc |", "|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['impl']} | {row['us_per_step']:,.0f} | {row['steps_per_s']:,.1f} "
                     f"| {600 * row['us_per_step'] / 1e6:,.1f} | {row['compile_s']:.2f} "
                     f"| {row['test_acc']:.4f} |")
    r = result["ratios"]
    lines += ["", f"- fnnet manual vs the fastest NumPy row ({r['numpy_fastest_row']}): "
              f"**{r['numpy_over_manual']:.2f}× faster** (target ≥ 3×)",
              f"- fnnet manual time / autodiff time: **{r['manual_over_autodiff']:.2f}** "
              f"(target ≤ 1.3)",
              f"- NumPy rows: {', '.join(map(str, c['threads']))} BLAS thread(s) "
              f"(`numpy-book-conv-<N>t`).",
              f"- {env['cpu']}, {env['cores_usable']} usable cores, 1-min load average "
              f"{env['loadavg_start'][0]:.1f} → {env['loadavg_end'][0]:.1f} (shared machine); "
              f"jax {env['jax']}, numpy {env['numpy']}; {result['date']}"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="steps (600 = one epoch of 60 000)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--threads", type=int, action="append", metavar="N",
                   help="BLAS threads of a NumPy row (repeatable: one row each; default 1). "
                        "On this shared 2-core machine 2 threads collapse under load (spinning "
                        "BLAS threads: 12 vs 103 steps/s on digits at load 7.5), so the "
                        "ratio is taken against the fastest NumPy row")
    p.add_argument("--jit", action="store_true", help="add the jit-per-step fnnet rows")
    p.add_argument("--impl", action="append", default=[], metavar="SUBSTRING",
                   help="run only rows whose name contains SUBSTRING (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: digits, 10 steps, 1 repeat")
    p.add_argument("--out", type=Path, help="JSON path (the .md goes next to it)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 10, 1
    args.threads = args.threads or [1]
    for name in ("steps", "repeats", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if min(args.threads) < 1 or max(args.threads) > usable_cores():
        p.error(f"--threads must be in [1, {usable_cores()}]; got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_dataset("digits" if args.quick else "fashion-mnist", download=False,
                        progress=False).as_images()
    input_shape, classes = data.x_train.shape[1:], data.num_classes
    rows_spec: dict[str, Trainer] = {
        f"fnnet-{g}-{loop}": fnnet_trainer(g, loop, input_shape, classes, args.lr)
        for loop in (("scan", "jit") if args.jit else ("scan",)) for g in ("manual", "autodiff")}
    for threads in args.threads:
        rows_spec[f"numpy-book-conv-{threads}t"] = numpy_trainer(args.lr, threads)
    rows_spec = {k: v for k, v in rows_spec.items()
                 if not args.impl or any(p in k for p in args.impl)}
    model = simple_conv_net(input_shape, classes)
    with jax.default_device(jax.devices("cpu")[0]):
        params = jax.device_get(model.init(jax.random.key(args.seed)))
    indices = make_indices(len(data.x_train), args.batch_size, args.steps, args.seed)
    load_start = load_average()
    times: dict[str, list[float]] = {name: [] for name in rows_spec}
    compiles: dict[str, list[float]] = {name: [] for name in rows_spec}
    finals: dict[str, Any] = {}
    for repeat in range(args.repeats):
        for name, train in rows_spec.items():
            final, seconds, compile_s = train(params, data.x_train, data.t_train, indices)
            times[name].append(seconds)
            compiles[name].append(compile_s)
            finals[name] = final
            print(f"[{repeat + 1}/{args.repeats}] {name}: {args.steps / seconds:,.1f} steps/s "
                  f"({seconds:.1f} s), compile {compile_s:.2f} s", file=sys.stderr, flush=True)
    rows = []
    for name in rows_spec:
        median = statistics.median(times[name])
        _, test_acc = evaluate(model, jax.tree.map(np.asarray, finals[name]), data.x_test,
                               data.t_test)
        rows.append({"impl": name, "seconds": times[name], "median_s": median,
                     "us_per_step": 1e6 * median / args.steps, "steps_per_s": args.steps / median,
                     "compile_s": compiles[name][0], "compile_s_all": compiles[name],
                     "test_acc": test_acc})
    by = {row["impl"]: row for row in rows}
    ratios = {}
    numpy_rows = [row for row in rows if row["impl"].startswith("numpy")]
    if numpy_rows and "fnnet-manual-scan" in by:
        fastest = min(numpy_rows, key=lambda row: row["median_s"])
        ratios["numpy_fastest_row"] = fastest["impl"]
        ratios["numpy_over_manual"] = fastest["median_s"] / by["fnnet-manual-scan"]["median_s"]
    if {"fnnet-manual-scan", "fnnet-autodiff-scan"} <= set(by):
        ratios["manual_over_autodiff"] = (by["fnnet-manual-scan"]["median_s"]
                                          / by["fnnet-autodiff-scan"]["median_s"])
    device = jax.devices()[0]
    result = {
        "config": {"net": "simple-conv", "dataset": data.name, "input_shape": list(input_shape),
                   "num_classes": classes, "filters": 30, "lr": args.lr,
                   "optimizer": "the book's Adam (fnnet.optim.adam / NumPy)",
                   "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                   "threads": args.threads, "seed": args.seed, "quick": args.quick},
        "environment": {**environment(device), "loadavg_start": load_start},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rows": rows, "ratios": ratios,
    }
    suffix = "-quick" if args.quick else ("" if args.steps == 600 else f"-{args.steps}steps")
    out = args.out or RESULTS / f"benchmark-{device.platform}-conv{suffix}.json"
    complete = "numpy_over_manual" in ratios and "manual_over_autodiff" in ratios
    write_results(out, result, markdown(result) if complete else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

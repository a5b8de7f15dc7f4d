"""Training speed of the sequel's chapter-6 Rnnlm step, side by side in one run: fnnet with
its hand rules (``grads="manual"``), fnnet differentiated by ``jax.grad`` through
``lax.scan`` of the plain cells (``grads="autodiff"``), the book's NumPy layers
(``peers/numpy_rnnlm.py``) and PyTorch's ``nn.LSTM`` on the CPU (``peers/torch_rnnlm.py``;
the row is skipped when torch is not installed).

The step is the book's: Embedding → LSTM → Affine → softmax cross-entropy over a batch of
B = 20 streams × T = 35 words, V = 10 000, D = H = 100, gradients clipped to norm 0.25, SGD
lr 20, the LSTM state carried from step to step. All four start from the same parameters
(fnnet's init) and train on the same random word ids; each implementation is warmed up (its
compile time reported apart), then timed for ``--steps`` steps per round, the
implementations interleaved round after round in a rotating order, each timed run after
:data:`common.SETTLE_S` idle seconds. Reported: the median
over rounds of the time per step, words (tokens) per second, and each ratio both as the
ratio of the medians and as the median of the per-round ratios (steadier on a shared CPU).
fnnet runs its steps as one compiled ``lax.scan`` program (:func:`fnnet.train_lm.make_lm_epoch`,
what ``fnnet lm`` runs); the peers loop in Python, as their own training scripts do.

Writes ``experiments/results/benchmark_rnnlm.json`` and ``.md``.

    PYTHONPATH=. python experiments/benchmark_rnnlm.py [--rounds 7 --steps 10] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from common import RESULTS, environment, matmul_floor, matmul_rate, settle, write_results

from fnnet.nets import rnnlm
from fnnet.train_lm import init_lm_state, lm_optimizer, make_lm_epoch, sequence_batches

LR, MAX_GRAD = 20.0, 0.25



def fnnet_runner(grads: str, params: dict, ids: np.ndarray, sizes: dict) -> Callable:
    """``run() -> losses`` of ``steps`` fnnet train steps (one program), state carried on."""
    V, B, T, U, steps = (sizes[k] for k in ("V", "B", "T", "U", "steps"))
    model = rnnlm(V, U, U, time_size=T, grads=grads)
    optimizer = lm_optimizer("sgd", LR, max_grad=MAX_GRAD)
    epoch = make_lm_epoch(model, optimizer, batch_size=B, time_size=T, steps=steps)
    holder = {"state": init_lm_state(model, jax.device_put(params), optimizer, B)}
    ids, key = jax.device_put(ids), jax.random.key(0)

    def run() -> np.ndarray:
        holder["state"], losses = epoch(holder["state"], ids, key, np.uint32(1))
        return np.asarray(losses)  # waits for the program

    return run


def numpy_runner(params: dict, ids: np.ndarray, sizes: dict) -> Callable:
    from peers.numpy_rnnlm import Rnnlm, train_step

    model = Rnnlm(params)
    x, t = sequence_batches(ids, sizes["B"], sizes["T"])

    def run() -> np.ndarray:
        return np.array([train_step(model, x[s], t[s], LR, MAX_GRAD) for s in range(len(x))])

    return run


def torch_runner(params: dict, ids: np.ndarray, sizes: dict, threads: int | None) -> Callable:
    from peers.torch_rnnlm import Trainer

    trainer = Trainer(params, LR, MAX_GRAD, threads=threads)
    x, t = sequence_batches(ids, sizes["B"], sizes["T"])

    def run() -> np.ndarray:
        return np.array([trainer.step(x[s], t[s]) for s in range(len(x))])

    return run


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--time", type=int, default=35)
    p.add_argument("--units", type=int, default=100, help="D = H")
    p.add_argument("--steps", type=int, default=10, help="steps per round and implementation")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-torch", action="store_true", help="leave the PyTorch row out")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: the cores this process may use)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny shapes, 2 rounds; writes benchmark_rnnlm_quick.*")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.vocab, args.batch, args.time, args.units, args.steps, args.rounds = 30, 2, 4, 6, 2, 2
    sizes = {"V": args.vocab, "B": args.batch, "T": args.time, "U": args.units,
             "steps": args.steps}
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, args.steps * args.batch * args.time + 1).astype(np.int32)
    params = jax.tree.map(np.asarray, rnnlm(args.vocab, args.units, args.units).init(
        jax.random.key(0)))
    makers = {"fnnet manual": lambda: fnnet_runner("manual", params, ids, sizes),
              "fnnet autodiff": lambda: fnnet_runner("autodiff", params, ids, sizes),
              "NumPy (the book's layers)": lambda: numpy_runner(params, ids, sizes)}
    skipped = None
    if args.no_torch:
        skipped = "left out (--no-torch)"
    elif importlib.util.find_spec("torch") is None:
        skipped = "torch is not installed (pip install torch)"
    else:
        makers["PyTorch nn.LSTM (CPU, eager)"] = lambda: torch_runner(params, ids, sizes,
                                                                      args.torch_threads)
    runners, compile_s, first_losses = {}, {}, {}
    for name, make in makers.items():
        runners[name] = make()
        start = time.perf_counter()
        first_losses[name] = float(runners[name]()[0])  # warm-up (compiles fnnet's program)
        compile_s[name] = time.perf_counter() - start
    per_step: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            settle(args.quick)
            start = time.perf_counter()
            runners[name]()
            per_step[name].append((time.perf_counter() - start) / args.steps)
    words = args.batch * args.time
    median_ms = {n: 1e3 * statistics.median(t) for n, t in per_step.items()}
    words_per_s = {n: words / (ms / 1e3) for n, ms in median_ms.items()}
    manual = "fnnet manual"
    ratios = {n: median_ms[n] / median_ms[manual] for n in runners if n != manual}
    round_ratios = {n: statistics.median(o / m for o, m in zip(per_step[n], per_step[manual],
                                                               strict=True))
                    for n in runners if n != manual}
    # The step's matmuls (the LSTM's input and recurrent products, the output layer), each
    # forward and twice backward (dX, dW), and the fastest any library runs the big ones.
    B, T, U, V = args.batch, args.time, args.units, args.vocab
    step_flops = 6 * B * T * (4 * U * (U + U) + U * V)
    rate = matmul_rate([(B * T, U, V), (U, B * T, V), (B * T, V, U)])
    numpy_name = "NumPy (the book's layers)"
    floor = matmul_floor(step_flops, rate, median_ms[numpy_name])
    env = environment()
    result = {
        "settings": {**sizes, "lr": LR, "max_grad": MAX_GRAD, "rounds": args.rounds,
                     "torch_threads": args.torch_threads,
                     "dtype": "float32", "data": "random word ids (seed 0)"},
        "median_ms_per_step": median_ms, "words_per_s": words_per_s,
        "manual_speedup_over": ratios, "manual_speedup_over_median_of_round_ratios": round_ratios,
        "compile_or_warmup_s": compile_s, "first_step_loss": first_losses,
        "all_rounds_ms_per_step": {n: [1e3 * t for t in ts] for n, ts in per_step.items()},
        "torch": skipped or "included", "matmul_rate": rate, "three_times_numpy": floor,
        "environment": env,
        "note": "shared, noisy CPU: read the ratios within this run, not the absolute times",
    }
    rows = "".join(f"| {n} | {median_ms[n]:.1f} | {words_per_s[n]:,.0f} | "
                   f"{'1.00' if n == manual else f'{ratios[n]:.2f}'} | "
                   f"{'–' if n == manual else f'{round_ratios[n]:.2f}'} | "
                   f"{compile_s[n]:.1f} | {first_losses[n]:.4f} |\n" for n in runners)
    table = (f"# Rnnlm training step: B={args.batch}, T={args.time}, V={args.vocab}, "
             f"D=H={args.units}, SGD lr {LR:g}, clip {MAX_GRAD}\n\n"
             f"Median of {args.rounds} interleaved rounds × {args.steps} steps; "
             f"{env['cores']} cores, load average {env['loadavg']} (shared: read the "
             f"ratios). Speed-up = time per step of the row ÷ fnnet manual's.\n\n"
             "| implementation | ms/step | words/s | fnnet manual is × faster | (median of "
             "round ratios) | warm-up s | first-step loss |\n"
             "|---|---:|---:|---:|---:|---:|---:|\n" + rows
             + ("" if skipped is None else f"\nPyTorch: {skipped}.\n")
             + f"\nThe step's matmuls are {step_flops / 1e9:.2f} GFLOP (forward, dX, dW). "
             f"This CPU ran the output layer's three products at {rate['gflops']:.0f} "
             f"GFLOP/s in this run (NumPy {rate['numpy_gflops']:.0f}, XLA "
             f"{rate['xla_gflops']:.0f}): the matmuls alone take ≥ {floor['floor_ms']:.1f} ms "
             f"a step, whoever runs them. 3× the NumPy peer would be "
             f"{floor['target_ms']:.1f} ms a step, {floor['needed_gflops']:.0f} GFLOP/s "
             f"with nothing else in it.\n")
    stem = "benchmark_rnnlm_quick" if args.quick else "benchmark_rnnlm"
    write_results(args.out_dir / f"{stem}.json", result, table)
    return result


if __name__ == "__main__":
    main()

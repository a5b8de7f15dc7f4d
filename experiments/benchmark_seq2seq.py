"""One addition epoch of peeky seq2seq (reversed questions, the book's settings), side by
side: fnnet manual vs fnnet autodiff vs the book's NumPy seq2seq vs ``torch.nn.LSTM``.

Every implementation starts from the same fnnet initial parameters (seed 0) and trains on
the same batches (one shuffled epoch: 45 000 problems, batch 128 → 351 steps) with the
book's Adam after the book's gradient clip (PyTorch: its own Adam, see
``peers/torch_seq2seq.py``). fnnet runs its epoch as one compiled ``lax.scan``
(:func:`fnnet.train.make_epoch`), compiled and warmed up first (compile time reported
apart). Each round times every implementation once over ``--steps`` steps, interleaved, so
they share the machine's load, each after a short idle pause (``common.SETTLE_S``: NumPy's BLAS
threads spin on after a call and slow whatever runs next); the table gives the median
over the rounds, scaled to a whole epoch, and the ratios of the medians. The mean loss of
each run is reported too: the same batches and init give the same losses (up to rounding;
PyTorch's Adam differs a little).

torch is optional: without it (or ``--no-torch``) its row is skipped. ``--torch-path DIR``
appends a site-packages folder holding torch to ``sys.path`` (a venv of its own).

    python experiments/benchmark_seq2seq.py [--rounds 5 --steps 351]
    python experiments/benchmark_seq2seq.py --quick      # tiny: a smoke run

Writes ``experiments/results/benchmark_seq2seq.json`` and ``.md``. The CPUs this runs on
are shared: read the ratios, and the load average recorded with them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from common import RESULTS, matmul_floor, matmul_rate, settle, write_results
from peers import numpy_seq2seq

from fnnet.data import load_seq2seq
from fnnet.nets import seq2seq as nets
from fnnet.optim import adam, clip_grads
from fnnet.results import environment
from fnnet.train import batch_indices, init_from_seed, init_train_state, make_epoch


def fnnet_runner(config: nets.Seq2seqConfig, params: Any, x: np.ndarray, t: np.ndarray,
                 lr: float, max_grad: float):
    """``(run(indices) -> (seconds, losses), compile_s)`` for fnnet with ``config.grads``."""
    model = nets.build(config)
    optimizer = optax.chain(clip_grads(max_grad), adam(lr))
    epoch = make_epoch(model, optimizer, unroll=1, donate=False)
    x_dev, t_dev = jax.device_put((x, t))
    state = init_train_state(model, jax.device_put(params), optimizer)
    compiled: dict[int, Any] = {}

    def compile_for(indices):
        if len(indices) not in compiled:
            compiled[len(indices)] = epoch.lower(state, x_dev, t_dev, indices).compile()
        return compiled[len(indices)]

    def run(indices: np.ndarray) -> tuple[float, np.ndarray]:
        program, idx = compile_for(indices), jax.device_put(indices)
        begin = time.perf_counter()
        _, losses = program(state, x_dev, t_dev, idx)
        losses = np.asarray(losses)  # waits for the epoch
        return time.perf_counter() - begin, losses

    return run, compile_for


def load_torch(path: str | None, enabled: bool):
    """The torch peer module, or ``None`` (with the reason) when it cannot be used."""
    if not enabled:
        return None, "--no-torch"
    if path:
        sys.path.append(path)
    try:
        return importlib.import_module("peers.torch_seq2seq"), None
    except ImportError as error:
        return None, f"torch not importable ({error})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=None,
                   help="steps timed per round and implementation (default: a whole epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-path", default=None, metavar="DIR")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--quick", action="store_true", help="1 000 problems, H 16, 2 rounds")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    out = args.out or RESULTS / ("benchmark_seq2seq_quick.json" if args.quick
                                 else "benchmark_seq2seq.json")
    size, hidden, batch = (1_000, 16, 32) if args.quick else (50_000, 128, 128)
    rounds = 2 if args.quick else args.rounds
    lr, max_grad = 0.001, 5.0
    load_before = os.getloadavg()
    data = load_seq2seq("addition", reverse=True, size=size)
    x, t = data.x_train, data.t_train
    steps_per_epoch = len(x) // batch
    steps = min(args.steps or steps_per_epoch, steps_per_epoch)
    config = nets.config_for("peeky", data, hidden_size=hidden)
    params, key = init_from_seed(nets.build(config), args.seed)
    params = jax.device_get(params)
    indices = np.asarray(batch_indices(key, num_examples=len(x), batch_size=batch,
                                       num_steps=steps_per_epoch))[:steps]

    runners: dict[str, Any] = {}
    compile_s: dict[str, float] = {}
    for grads in ("manual", "autodiff"):
        run, compile_for = fnnet_runner(config._replace(grads=grads), params, x, t, lr,
                                        max_grad)
        begin = time.perf_counter()
        compile_for(indices)
        compile_s[f"fnnet-{grads}"] = time.perf_counter() - begin
        run(indices)  # warm-up: one full run
        runners[f"fnnet-{grads}"] = run
    runners["numpy-book"] = lambda idx: numpy_seq2seq.train(
        params, x, t, idx, start_id=data.start_id, lr=lr, max_grad=max_grad)[1:]
    torch_peer, skipped = load_torch(args.torch_path, not args.no_torch)
    if torch_peer is not None:
        runners["torch-cpu"] = lambda idx: torch_peer.train(
            params, x, t, idx, start_id=data.start_id, lr=lr, max_grad=max_grad,
            threads=args.torch_threads)
        runners["torch-cpu"](indices[:2])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    mean_loss: dict[str, float] = {}
    for _ in range(rounds):
        for name, run in runners.items():
            settle(args.quick)
            elapsed, losses = run(indices)
            seconds[name].append(elapsed)
            mean_loss[name] = float(np.mean(losses))
    scale = steps_per_epoch / steps
    epoch_s = {name: scale * statistics.median(s) for name, s in seconds.items()}
    manual = epoch_s["fnnet-manual"]
    ratios = {f"{name}_over_manual": s / manual for name, s in epoch_s.items()
              if name != "fnnet-manual"}
    # Each round runs them back to back under the same load: the per-round ratios' median.
    round_ratios = {f"{name}_over_manual": statistics.median(
        a / m for a, m in zip(s, seconds["fnnet-manual"], strict=True))
        for name, s in seconds.items() if name != "fnnet-manual"}
    # The step's matmuls (peeky: the encoder's h joins the decoder's LSTM and affine
    # inputs), each forward and twice backward (dX, dW), at the speed this CPU runs the
    # recurrent products' shapes.
    N, D, H, V = batch, config.wordvec_size, hidden, config.vocab_size
    Tq, Ta = config.question_length, config.answer_length
    step_flops = 3 * (Tq * 2 * N * (D + H) * 4 * H + Ta * 2 * N * (D + 2 * H) * 4 * H
                      + Ta * 2 * N * 2 * H * V)
    rate = matmul_rate([(N, H, 4 * H), (H, N, 4 * H), (N, 4 * H, H), (N * Tq, D + H, 4 * H)])
    floor = matmul_floor(step_flops, rate, 1e3 * epoch_s["numpy-book"] / steps_per_epoch)
    result = {
        "settings": {"dataset": "addition (reversed)", "net": "peeky", "train_size": len(x),
                     "hidden": hidden, "wordvec": config.wordvec_size, "batch": batch,
                     "steps_per_epoch": steps_per_epoch, "steps_timed": steps,
                     "rounds": rounds, "seed": args.seed},
        "epoch_s_median": epoch_s, "rounds_s": seconds, "compile_s": compile_s,
        "mean_loss": mean_loss, "ratios": ratios, "round_ratios": round_ratios,
        "torch_skipped": skipped, "matmul_rate": rate, "three_times_numpy": floor,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "environment": environment(),
    }
    rows = "".join(f"| {name} | {s:.2f} | {s / manual:.2f}× | "
                   f"{round_ratios.get(f'{name}_over_manual', 1.0):.2f}× | "
                   f"{mean_loss[name]:.4f} | {compile_s.get(name, 0):.1f} |\n"
                   for name, s in epoch_s.items())
    table = (f"# One addition epoch, peeky seq2seq (reversed), H {hidden}, batch {batch}\n\n"
             f"{steps_per_epoch} steps an epoch; median of {rounds} interleaved rounds of "
             f"{steps} steps, scaled to the epoch. Load average before "
             f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (shared CPU: read the "
             f"ratios).\n\n"
             "| implementation | s/epoch (median) | × fnnet manual | median of round ratios "
             "| mean loss | compile s |\n|---|---:|---:|---:|---:|---:|\n" + rows
             + (f"\ntorch row skipped: {skipped}\n" if skipped else "")
             + f"\nA step's matmuls are {step_flops / 1e6:.0f} MFLOP (forward, dX, dW). "
             f"This CPU ran the recurrent products' shapes at {rate['gflops']:.0f} GFLOP/s "
             f"in this run (NumPy {rate['numpy_gflops']:.0f}, XLA {rate['xla_gflops']:.0f}): "
             f"the matmuls alone take ≥ {floor['floor_ms']:.2f} ms a step, whoever runs "
             f"them. 3× the NumPy peer would be {floor['target_ms']:.2f} ms a step, "
             f"{floor['needed_gflops']:.0f} GFLOP/s with nothing else in it.\n")
    write_results(out, result, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

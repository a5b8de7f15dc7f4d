"""Forward + backward time of time_lstm: hand BPTT (fnnet.manual) vs autodiff of a scan.

At the sequel's chapter-6 Rnnlm shapes (batch N = 20, time T = 35, D = H = 100, float32):
``jax.jit(jax.value_and_grad(loss))`` of ``loss = Σ hs·G_hs + Σ h_last·G_h + Σ c_last·G_c``
(random cotangents on every output) with respect to all six arguments, for the manual op
and for the reference (``lax.scan`` of the plain cell differentiated by ``jax.grad``).
Both are compiled and warmed up first (compile time reported apart), then timed side by
side — the two interleaved, round after round — and the medians compared. Writes
``experiments/runs/bptt_speed.json`` and ``bptt_speed.md``.

The CPUs this runs on are often shared: the absolute times are noisy; read the ratio.

    PYTHONPATH=. python experiments/bptt_speed.py [--rounds 30 --calls 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS, environment

from fnnet import autodiff, manual


def make_step(ops, cotangents):
    def loss(*args):
        outputs = ops.time_lstm(*args)
        return sum(jnp.sum(o * g) for o, g in zip(outputs, cotangents, strict=True))

    return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6))))


def inputs(N: int, T: int, D: int, H: int, seed: int = 0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)

    args = (normal(N, T, D), normal(N, H), normal(N, H), normal(D, 4 * H, scale=D ** -0.5),
            normal(H, 4 * H, scale=H ** -0.5), normal(4 * H, scale=0.1))
    cotangents = (normal(N, T, H), normal(N, H), normal(N, H))
    return args, cotangents


def time_calls(step, args, calls: int) -> float:
    """Seconds per call over ``calls`` back-to-back calls (results waited for)."""
    start = time.perf_counter()
    for _ in range(calls):
        out = step(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--time", type=int, default=35)
    p.add_argument("--units", type=int, default=100, help="D = H")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--calls", type=int, default=20, help="calls per round and implementation")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    N, T, U = args.batch, args.time, args.units
    arrays, cotangents = inputs(N, T, U, U)
    steps = {"manual": make_step(manual, cotangents), "autodiff": make_step(autodiff, cotangents)}
    compile_s, values = {}, {}
    for name, step in steps.items():
        start = time.perf_counter()
        values[name] = jax.block_until_ready(step(*arrays))
        compile_s[name] = time.perf_counter() - start
        time_calls(step, arrays, 3)  # warm-up
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / float(np.max(np.abs(b))))
              for a, b in zip(jax.tree.leaves(values["manual"]),
                              jax.tree.leaves(values["autodiff"]), strict=True))
    per_call = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            per_call[name].append(time_calls(step, arrays, args.calls))
    median_ms = {name: 1e3 * statistics.median(t) for name, t in per_call.items()}
    best_ms = {name: 1e3 * min(t) for name, t in per_call.items()}
    ratio = median_ms["autodiff"] / median_ms["manual"]
    # Each round times the two back to back, under the same load: their ratio is steadier.
    round_ratio = statistics.median(a / m for a, m in zip(per_call["autodiff"],
                                                          per_call["manual"], strict=True))
    result = {
        "settings": {"N": N, "T": T, "D": U, "H": U, "dtype": "float32", "rounds": args.rounds,
                     "calls_per_round": args.calls},
        "median_ms_per_step": median_ms,
        "best_ms_per_step": best_ms,
        "all_rounds_ms": {name: [1e3 * t for t in ts] for name, ts in per_call.items()},
        "compile_s": compile_s,
        "speedup_manual_over_autodiff": ratio,
        "speedup_median_of_round_ratios": round_ratio,
        "speedup_of_best_times": best_ms["autodiff"] / best_ms["manual"],
        "max_relative_gradient_difference": gap,
        "environment": environment(),
        "note": "shared, noisy CPU: compare the ratio, not the absolute times",
    }
    table = (f"# time_lstm forward + backward, N={N}, T={T}, D=H={U}, float32\n\n"
             f"Jitted value_and_grad w.r.t. all six arguments, random cotangents on hs, h_last "
             f"and c_last; median of {args.rounds} rounds × {args.calls} calls, the two "
             f"interleaved. Shared CPU (load average {result['environment']['loadavg']}): "
             f"read the ratio, not the times.\n\n"
             "| implementation | ms/step (median) | ms/step (best round) | compile s |\n"
             "|---|---:|---:|---:|\n"
             + "".join(f"| fnnet {name} | {median_ms[name]:.3f} | {best_ms[name]:.3f} | "
                       f"{compile_s[name]:.2f} |\n" for name in steps)
             + f"\nmanual over autodiff: **{ratio:.2f}×** (ratio of the medians); "
               f"{round_ratio:.2f}× (median of the per-round ratios); "
               f"{best_ms['autodiff'] / best_ms['manual']:.2f}× (best rounds). Max relative "
               f"gradient difference {gap:.1e}.\n")
    print(table)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bptt_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "bptt_speed.md").write_text(table)
    return result


if __name__ == "__main__":
    main()

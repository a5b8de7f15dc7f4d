"""Hand BPTT and the attention rules against autodiff: relative error for T = 1 … 64.

The issue's targets: "hand BPTT equals the autodiff reference to 1e-10 relative in float64
for T from 1 to 64, N = 1, H = 1, D ≠ H, on every output's cotangent" (time_rnn, time_lstm,
time_gru, D = 2) and "every new rule equals its reference to 1e-10 relative in float64
(T_enc ≠ T_dec, N = 1, H = 1 included)" (attention_weight, weight_sum over T encoder steps,
time_attention with T_enc = T and T_dec = T + 1).

For each op and T: random inputs (seeded), the VJP of the manual op and of the reference
under a random cotangent on each output alone and on all outputs at once; the error is
``max|manual − reference| / max|reference|`` per gradient, the worst over gradients and
cotangents. Prints a table and writes ``experiments/runs/bptt_agreement.json``.

    PYTHONPATH=. python experiments/bptt_agreement.py [--max-t 64]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import RESULTS, environment  # noqa: E402

from fnnet import autodiff, manual  # noqa: E402

TARGET = 1e-10
BLOCKS = {"time_rnn": 1, "time_lstm": 4, "time_gru": 3}
COLUMNS = (1, 2, 4, 8, 16, 32, 64)


def arguments(op: str, T: int, rng: np.random.Generator, N: int = 1, D: int = 2,
              H: int = 1) -> tuple:
    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape))

    if op in BLOCKS:
        k = BLOCKS[op]
        state = [normal(N, H) for _ in range(2 if op == "time_lstm" else 1)]
        return (normal(N, T, D), *state, normal(D, k * H, scale=D ** -0.5),
                normal(H, k * H, scale=H ** -0.5), normal(k * H, scale=0.5))
    if op == "attention_weight":
        return normal(N, T, H), normal(N, H)
    if op == "weight_sum":
        return normal(N, T, H), jax.nn.softmax(normal(N, T), axis=-1)
    return normal(N, T, H), normal(N, T + 1, H)  # time_attention: T_enc = T, T_dec = T + 1


def cotangent_sets(outputs, rng: np.random.Generator) -> list:
    """A random cotangent on each output alone (zeros elsewhere), then on all at once."""
    leaves, treedef = jax.tree.flatten(outputs)
    random = [jnp.asarray(rng.standard_normal(leaf.shape)) for leaf in leaves]
    alone = [[r if j == i else jnp.zeros_like(r) for j, r in enumerate(random)]
             for i in range(len(random))]
    return [treedef.unflatten(s) for s in ([*alone, random] if len(random) > 1 else [random])]


def relative_error(got, want) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))
                     / max(float(np.max(np.abs(np.asarray(b)))), 1e-300))
               for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True))


def measure(op: str, T: int) -> float:
    rng = np.random.default_rng(1000 * T + len(op))
    args = arguments(op, T, rng)
    sets = cotangent_sets(getattr(autodiff, op)(*args), rng)
    cots = jax.tree.map(lambda *xs: jnp.stack(xs), *sets)

    def pullbacks(ops, args, cots):
        _, pullback = jax.vjp(getattr(ops, op), *args)
        return jax.vmap(pullback)(cots)

    got = jax.jit(lambda a, c: pullbacks(manual, a, c))(args, cots)
    want = jax.jit(lambda a, c: pullbacks(autodiff, a, c))(args, cots)
    return max(relative_error(jax.tree.map(lambda x, k=k: x[k], got),
                              jax.tree.map(lambda x, k=k: x[k], want))
               for k in range(len(sets)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-t", type=int, default=64)
    p.add_argument("--out", type=Path, default=RESULTS / "bptt_agreement.json")
    args = p.parse_args(argv)
    ops = ("time_rnn", "time_lstm", "time_gru", "attention_weight", "weight_sum",
           "time_attention")
    errors = {}
    with jax.default_matmul_precision("highest"):
        for op in ops:
            errors[op] = [measure(op, T) for T in range(1, args.max_t + 1)]
    columns = [t for t in COLUMNS if t <= args.max_t]
    lines = ["| op | " + " | ".join(f"T={t}" for t in columns) + " | worst, T = 1 … "
             f"{args.max_t} | ≤ {TARGET:g} |",
             "|---|" + "---:|" * (len(columns) + 1) + ":---:|"]
    for op, errs in errors.items():
        worst = max(errs)
        lines.append(f"| {op} | " + " | ".join(f"{errs[t - 1]:.1e}" for t in columns)
                     + f" | {worst:.1e} (T={int(np.argmax(errs)) + 1}) | "
                     f"{'yes' if worst <= TARGET else 'NO'} |")
    print("Relative error of the hand rule against autodiff, float64, N = 1, H = 1 (D = 2; "
          "time_attention T_dec = T + 1), every output's cotangent:\n")
    print("\n".join(lines))
    result = {
        "settings": {"N": 1, "H": 1, "D": 2, "dtype": "float64", "T": list(range(
            1, args.max_t + 1)), "time_attention": "T_enc = T, T_dec = T + 1",
            "error": "max over gradients and cotangent sets (each output alone, all at "
                     "once) of max|manual - reference| / max|reference|"},
        "target": TARGET,
        "relative_error": errors,
        "worst": {op: max(errs) for op, errs in errors.items()},
        "all_within_target": all(max(errs) <= TARGET for errs in errors.values()),
        "environment": environment(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Max |manual − autodiff| of every op's gradient, float32 and float64, on random inputs.

For each op in ``fnnet.manual.OPS``: random inputs of a few shapes (seeded), the full VJP
under a random cotangent, and the largest absolute difference between the hand rule and
``jax.grad`` of the reference over all shapes and differentiable arguments. Writes
``experiments/runs/op_agreement.json`` and prints a markdown table.

    python experiments/op_agreement.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS

from fnnet import autodiff, manual


def cases(rng: np.random.Generator, dtype) -> dict[str, list[tuple]]:
    """Per op, a list of argument tuples; integer arguments are not differentiated."""
    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    def away_from_zero(*shape):  # relu's kink: a float32 rounding may not flip the sign
        v = rng.standard_normal(shape)
        return jnp.asarray(np.sign(v) * (0.1 + np.abs(v)), dtype)

    labels = {c: jnp.asarray(rng.integers(0, c, 8), jnp.int32) for c in (2, 10, 1000)}
    logits = {c: normal(8, c, scale=3.0) for c in (2, 10, 1000)}
    return {
        "sigmoid": [(normal(64, 50),), (normal(7),)],
        "relu": [(away_from_zero(64, 50),), (away_from_zero(7),)],
        "tanh": [(normal(64, 50),), (normal(7),)],
        "affine": [(normal(100, 784), normal(784, 50, scale=0.1), normal(50)),
                   (normal(1, 3), normal(3, 2), normal(2))],
        "matmul": [(normal(100, 784), normal(784, 50, scale=0.1)), (normal(2, 3, 4), normal(4, 5))],
        "softmax": [(logits[c],) for c in logits],
        "softmax_cross_entropy": [(logits[c], labels[c]) for c in logits]
        + [(logits[10], jax.nn.one_hot(labels[10], 10, dtype=dtype))],
        "cross_entropy_error": [(jax.nn.softmax(logits[c]), labels[c]) for c in logits],
        "mean_squared_error": [(normal(8, 10), normal(8, 10))],
        "add": [(normal(3, 1), normal(1, 4)), (normal(5, 4), normal(4))],
        "mul": [(normal(3, 1), normal(1, 4)), (normal(5, 4), normal(4))],
        "branch": [(normal(4, 3), 3)],
        "repeat": [(normal(2, 3), 5)],
        "sum": [(normal(2, 3, 4),)],
    }


def max_difference(op: str, args: tuple, rng: np.random.Generator) -> float:
    diff = [i for i, a in enumerate(args)
            if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)]

    def vjp(fn):
        def on_diff(*d):
            full = list(args)
            for i, a in zip(diff, d, strict=True):
                full[i] = a
            return fn(*full)

        out, pullback = jax.vjp(on_diff, *(args[i] for i in diff))
        cot = jax.tree.map(lambda o: jnp.asarray(rng.standard_normal(o.shape), o.dtype), out)
        return pullback(cot)

    state = rng.bit_generator.state
    grads_m = vjp(getattr(manual, op))
    rng.bit_generator.state = state  # the same cotangent for both
    grads_r = vjp(getattr(autodiff, op))
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(grads_m, grads_r, strict=True))


def measure(dtype) -> dict[str, float]:
    rng = np.random.default_rng(0)
    return {op: max(max_difference(op, args, rng) for args in arg_list)
            for op, arg_list in cases(rng, dtype).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "op_agreement.json")
    args = parser.parse_args()
    float32 = measure(jnp.float32)
    jax.config.update("jax_enable_x64", True)
    float64 = measure(jnp.float64)
    print("| op | max abs diff float32 | max abs diff float64 |\n|---|---:|---:|")
    for op in float32:
        print(f"| {op} | {float32[op]:.2e} | {float64[op]:.2e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"float32": float32, "float64": float64,
                                    "jax": jax.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Max |manual − autodiff| of every op's gradient, float32 and float64, eager and jitted.

For each op in ``fnnet.manual.OPS``: random inputs of a few shapes (seeded), the full VJP
under a random cotangent, and the largest difference between the hand rule and ``jax.grad``
of the reference over all shapes and differentiable arguments: absolute, and relative to the
gradient's largest entry. Each is run eagerly (op by op, as the script first did) and as one
jitted program (as training runs it); matmuls at ``highest`` precision.

Why the two differ: eagerly, the hand rule's ``dW = Xᵀ·G`` materialises ``Xᵀ`` and multiplies,
while autodiff's transpose of ``x @ W`` is one ``dot_general`` contracting axis 0; XLA:CPU
sums the two in different orders (for the (100, 784) affine: 2.3e-5 on entries up to 47, a
few float32 ulps). Under ``jit`` XLA folds the transpose into the dot and both are the same
program: bit for bit equal. Which kernels the eager dots get depends on the CPU, so the eager
float32 figures differ between machines (the committed JSON names its CPU).

Writes ``--out`` (default ``experiments/runs/op_agreement.json``; the README quotes
``experiments/results/op_agreement.json``) and prints a markdown table.

    python experiments/op_agreement.py --out experiments/results/op_agreement.json
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS

from fnnet import autodiff, manual
from fnnet.results import environment, write_json


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


def differences(op: str, args: tuple, rng: np.random.Generator,
                jit: bool) -> tuple[float, float]:
    """``(max |a − b|, max |a − b| / max |b|)`` over the differentiable arguments of ``op``:
    ``a`` the hand rule's VJP, ``b`` autodiff's, under the same random cotangent, both run
    eagerly (op by op) or each as one jitted program."""
    diff = [i for i, a in enumerate(args)
            if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)]

    def vjp(fn, cotangent_rng):
        def on_diff(*d):
            full = list(args)
            for i, a in zip(diff, d, strict=True):
                full[i] = a
            return fn(*full)

        primals = tuple(args[i] for i in diff)
        out = jax.eval_shape(on_diff, *primals)
        cot = jax.tree.map(lambda o: jnp.asarray(cotangent_rng.standard_normal(o.shape),
                                                 o.dtype), out)

        def pull(primals, cot):
            return jax.vjp(on_diff, *primals)[1](cot)

        return (jax.jit(pull) if jit else pull)(primals, cot)

    state = rng.bit_generator.state
    grads_m = vjp(getattr(manual, op), rng)
    rng.bit_generator.state = state  # the same cotangent for both
    grads_r = vjp(getattr(autodiff, op), rng)
    worst_abs = worst_rel = 0.0
    for a, b in zip(grads_m, grads_r, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        gap, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
        worst_abs = max(worst_abs, gap)
        worst_rel = max(worst_rel, gap / scale if scale > 0 else gap)
    return worst_abs, worst_rel


def measure(dtype, jit: bool) -> dict[str, dict[str, float]]:
    """Per op, the worst ``max_abs`` and ``max_rel`` over its cases."""
    rng = np.random.default_rng(0)
    result = {}
    for op, arg_list in cases(rng, dtype).items():
        pairs = [differences(op, args, rng, jit) for args in arg_list]
        result[op] = {"max_abs": max(p[0] for p in pairs), "max_rel": max(p[1] for p in pairs)}
    return result


def summary(by_mode: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """The worst over the ops, per mode: ``eager_max_abs``, ``eager_max_rel``, ``jit_…``."""
    return {f"{mode}_{stat}": max(row[stat] for row in rows.values())
            for mode, rows in by_mode.items() for stat in ("max_abs", "max_rel")}


def cpu_model() -> str:
    """The CPU's model name (Linux), which decides XLA:CPU's kernels and so the rounding."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "op_agreement.json",
                        help="JSON (the committed one: experiments/results/op_agreement.json)")
    args = parser.parse_args(argv)
    result: dict = {}
    for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
        with jax.enable_x64(name == "float64"), jax.default_matmul_precision("highest"):
            by_mode = {mode: measure(dtype, jit=mode == "jit") for mode in ("eager", "jit")}
        result[name] = {**by_mode, "summary": summary(by_mode)}
    print("| op | float32 eager: abs | rel | jit: abs | float64 eager: abs | rel | jit: abs |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for op in result["float32"]["eager"]:
        cells = []
        for name in ("float32", "float64"):
            eager, jitted = result[name]["eager"][op], result[name]["jit"][op]
            cells += [f"{eager['max_abs']:.2e}", f"{eager['max_rel']:.1e}",
                      f"{jitted['max_abs']:.2e}"]
        print(f"| {op} | " + " | ".join(cells) + " |")
    for name in ("float32", "float64"):
        worst = result[name]["summary"]
        print(f"{name}: eager ≤ {worst['eager_max_rel']:.1e} relative "
              f"({worst['eager_max_abs']:.1e} absolute), jit ≤ {worst['jit_max_rel']:.1e} "
              f"relative")
    write_json(args.out, {**result, "cpu": cpu_model(), "environment": environment()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Gradient check of the book's nets on real samples, and the trap in the book's cross-entropy.

1. For the two-layer net (64-50-10 on digits, the book's std 0.01 init) and a 3-hidden-layer
   ReLU MLP (He init), compare on three training samples, leaf by leaf, the hand-written
   gradients with jax.grad (autodiff) and with central differences (numerical), and print the
   book's "mean |difference| per parameter" line (manual vs numerical).
2. Show that the book's ``cross_entropy_error(softmax(x), t) = −Σ t·log(y + 1e-7)/N`` does not
   give the logits the gradient ``(y − t)/N`` once the true class is confidently wrong
   (its probability below ~1e-7): the ``+ 1e-7`` flattens the loss and the gradient vanishes.

Run ``python experiments/gradient_check.py [--dataset fashion-mnist] [--dtype float32]``;
writes ``experiments/runs/gradient_check.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS

from fnnet import manual
from fnnet.data import DATASETS
from fnnet.gradcheck import GradReport, gradcheck_model

NETS = {  # name: gradcheck_model arguments
    "two-layer": dict(net="two-layer", hidden=(50,), weight_init="normal"),
    "mlp-3x100": dict(net="mlp", hidden=(100, 100, 100), weight_init="he"),
}


def _display(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    root = RESULTS.parents[1]
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(
        path)


def book_line(report: GradReport) -> str:
    """The book's check: mean |backprop − numerical| per parameter (on the checked entries)."""
    return "  ".join(f"{leaf.path}:{leaf.numerical.mean_abs:.2e}" for leaf in report.leaves)


def book_cross_entropy_demo() -> dict:
    """Logits gradient of softmax + the book's CE vs the exact (y − t)/N, N = 2 rows.

    Row 0: the true class is 3 below the max (p ≈ 0.04): both agree. Row 1: it is 30 below
    (p ≈ 1e-13 < 1e-7): the book's gradient is ~p/(p + 1e-7) ≈ 1e-6 times the right one.
    """
    logits = jnp.array([[0.0, 3.0, 1.0, -1.0], [-30.0, 0.0, -1.0, -2.0]], jnp.float64)
    labels = jnp.array([0, 0])
    exact = jax.grad(manual.softmax_cross_entropy)(logits, labels)
    book = jax.grad(lambda z: manual.cross_entropy_error(manual.softmax(z), labels))(logits)
    formula = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 4)) / logits.shape[0]
    return {
        "logits": np.asarray(logits).tolist(),
        "labels": np.asarray(labels).tolist(),
        "true_class_probability": np.asarray(jax.nn.softmax(logits)[:, 0]).tolist(),
        "grad_softmax_cross_entropy": np.asarray(exact).tolist(),
        "grad_book_cross_entropy": np.asarray(book).tolist(),
        "difference": np.asarray(book - exact).tolist(),
        "max_abs_exact_vs_formula": float(jnp.max(jnp.abs(exact - formula))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", choices=DATASETS)
    parser.add_argument("--data-dir", default=None, help="extra directory with IDX files")
    parser.add_argument("--batch-size", type=int, default=3, help="samples (default 3)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--max-entries", type=int, default=64,
                        help="entries per leaf checked numerically (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "gradient_check.json")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # float64 numerical reference and demo

    results: dict = {
        "config": {**vars(args), "output": _display(args.output)},
        "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                        "python": platform.python_version()},
        "nets": {},
    }
    for name, net_args in NETS.items():
        report = gradcheck_model(**net_args, dataset=args.dataset, batch_size=args.batch_size,
                                 dtype=args.dtype, seed=args.seed, data_dir=args.data_dir,
                                 max_entries=args.max_entries)
        print(f"\n== {name}: {net_args['hidden']} hidden, {net_args['weight_init']} init, "
              f"{args.batch_size} {args.dataset} samples, {args.dtype}")
        print(report.format_table())
        print(f"mean |manual - numerical| per parameter: {book_line(report)}")
        results["nets"][name] = {**report.to_dict(), "arguments": net_args}

    demo = book_cross_entropy_demo()
    results["book_cross_entropy"] = demo
    np.set_printoptions(precision=3, linewidth=100)
    print("\n== logits gradient: softmax_cross_entropy vs the book's -sum t*log(y + 1e-7)/N")
    for row, p in enumerate(demo["true_class_probability"]):
        print(f"row {row}: logits {demo['logits'][row]}, true class 0, p(true) = {p:.2e}")
        for label in ("grad_softmax_cross_entropy", "grad_book_cross_entropy", "difference"):
            print(f"  {label:28s} {np.array(demo[label][row])}")
    print(f"softmax_cross_entropy gradient vs (y - t)/N: max |diff| "
          f"{demo['max_abs_exact_vs_formula']:.1e}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {_display(args.output)}")
    return 0 if all(net["ok"] for net in results["nets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

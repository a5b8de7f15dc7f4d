"""The sequel's chapter-6 figure of vanishing and exploding gradients: the norm of the
gradient flowing back through time in an RNN, for a large and a small ``Wh``.

The book's snippet (``ch06/rnn_gradient_graph.py``): N = 2, H = 3, T = 20, ``dh = 1``,
``Wh = randn(H, H)`` (seeded) or ``randn(H, H)·0.5``, and ``dh ← dh·Whᵀ`` twenty times,
plotting ``‖dh‖/N`` — without the tanh, so the norm grows or shrinks geometrically (by the
largest singular value of ``Wh``).

Here the gradients come from fnnet's hand BPTT (:func:`fnnet.ops.bptt.time_rnn`, checked
against autodiff of a scan, printed): a cotangent of ones on ``h_T`` only, read back as
the cotangent of each step's pre-activation ``da_t`` (with ``Wx = I``, ``dxs[:, t] =
da_t``). With ``xs = 0``, ``h0 = 0``, ``b = 0`` every ``h_t`` is 0, tanh' = 1 there, and
``‖da_t‖/N`` is exactly the book's curve (the JSON gives the largest difference from the
NumPy chain); with random inputs (``xs`` ~ N(0, 1)) tanh' < 1 shrinks it further — the
case the book describes in words.

Writes ``experiments/results/gradient_norm_through_time.json`` and ``.png``.

    PYTHONPATH=. python experiments/gradient_norm_through_time.py
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import lm_parser, write

from fnnet import autodiff, manual

SCALES = {"large Wh (randn)": 1.0, "small Wh (randn × 0.5)": 0.5}


def book_chain(Wh: np.ndarray, N: int, T: int) -> list[float]:
    """The book's loop: ``dh ← dh·Whᵀ`` T times from ones, ``‖dh‖/N`` after each."""
    dh, norms = np.ones((N, Wh.shape[0])), []
    for _ in range(T):
        dh = dh @ Wh.T
        norms.append(float(np.sqrt(np.sum(dh ** 2)) / N))
    return norms


def bptt_norms(ops, Wh: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``‖da_t‖/N`` for t = T−1 … 0 (steps back from the last), by ``ops.time_rnn``'s rule."""
    N, _, H = xs.shape

    @jax.jit  # one program (op by op, every primitive of the BPTT would compile on its own)
    def norms_back(xs, Wh):
        def last_h(xs):
            return ops.time_rnn(xs, jnp.zeros((N, H), xs.dtype), jnp.eye(H, dtype=xs.dtype), Wh,
                                jnp.zeros(H, xs.dtype))[1]

        h_last, pullback = jax.vjp(last_h, xs)
        (dxs,) = pullback(jnp.ones_like(h_last))
        return jnp.sqrt(jnp.sum(dxs ** 2, axis=(0, 2))) / N  # (T,), index t

    norms = norms_back(jnp.asarray(xs), jnp.asarray(Wh))
    return np.asarray(norms[::-1])  # 0 = the last step, then further back


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, (case, title) in zip(axes, (("zero_inputs", "h = 0 (tanh' = 1): the book's chain"),
                                        ("random_inputs", "random inputs (tanh' < 1)")),
                                 strict=True):
        for label, run in result["runs"].items():
            steps = np.arange(len(run[case]))
            ax.plot(steps, run[case], marker="o", markersize=3, label=f"{label}, fnnet BPTT")
            if case == "zero_inputs":
                ax.plot(steps, run["book_chain"], "k:", linewidth=1)
        ax.set(xlabel="time steps back from the last", yscale="log", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖dh‖ / N")
    fig.suptitle("Gradient norm through time in an RNN (dotted: the book's NumPy chain)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = lm_parser(__doc__)
    p.set_defaults(seed=3)  # the book's np.random.seed(3)
    args = p.parse_args(argv)
    N, H, T = 2, 3, 5 if args.quick else 20
    base = np.random.RandomState(args.seed).randn(H, H)  # the book's draw: seed(3), randn
    xs_random = np.random.default_rng(args.seed).standard_normal((N, T, H))
    runs, worst = {}, 0.0
    with jax.enable_x64(True):
        for label, scale in SCALES.items():
            Wh = base * scale
            zero = bptt_norms(manual, Wh, np.zeros((N, T, H)))
            random_inputs = bptt_norms(manual, Wh, xs_random)
            reference = bptt_norms(autodiff, Wh, xs_random)
            chain = book_chain(Wh, N, T)
            worst = max(worst, float(np.max(np.abs(random_inputs - reference) / reference)))
            # step 0 is da_T = ones (before any Whᵀ); the book's list starts one step back.
            runs[label] = {"scale": scale, "zero_inputs": zero[1:].tolist(),
                           "random_inputs": random_inputs[1:].tolist(), "book_chain": chain[:-1],
                           "largest_singular_value": float(np.linalg.svd(Wh)[1][0]),
                           "book_chain_max_rel_difference":
                               float(np.max(np.abs(zero[1:] - chain[:-1]) / np.array(chain[:-1])))}
            print(f"{label}: σ_max(Wh) = {runs[label]['largest_singular_value']:.3f}; "
                  f"‖dh‖/N {chain[0]:.3g} → {chain[-2]:.3g} after {T - 1} steps back "
                  f"(with random inputs: {random_inputs[-1]:.3g})")
    print(f"hand BPTT vs autodiff, worst relative difference: {worst:.1e}")
    result = {"settings": {"N": N, "H": H, "T": T, "seed": args.seed, "dtype": "float64",
                           "rng": "Wh: np.random.RandomState(seed).randn (the book's "
                                  "np.random.seed(3) + randn); inputs: default_rng(seed)"},
              "bptt_vs_autodiff_max_rel_difference": worst, "runs": runs}
    write("gradient_norm_through_time", args, result, plot)
    return result


if __name__ == "__main__":
    main()

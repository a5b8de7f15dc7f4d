"""What the chapter-6 experiment scripts share: data, the run record, smoothing, output files.

Every script is one command that writes ``<name>.json`` and ``<name>.png`` into
``--out-dir``; ``--quick`` runs it tiny on the bundled digits (a smoke run, written as
``<name>_quick``) so the tests can exercise it in seconds.

Where results go: by default into :data:`RESULTS`, ``experiments/runs/`` (ignored by git), so
running an experiment never overwrites the committed results the README shows, which live in
:data:`COMMITTED` (``experiments/results/``). To refresh those, pass ``--out-dir
experiments/results`` (or ``--out experiments/results/...`` where a script takes a file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnnet.data import DATASETS, Dataset, load_dataset
from fnnet.layers import Model
from fnnet.results import environment
from fnnet.train import batch_indices, init_train_state, make_epoch

COMMITTED = Path(__file__).resolve().parent / "results"
"""The committed results (JSON and PNG) the README shows."""

RESULTS = Path(__file__).resolve().parent / "runs"
"""Where the scripts write by default (git-ignored): a run never overwrites :data:`COMMITTED`."""

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The development machines' read-only data (PTB valid and test), beside the checkout."""


def parser(doc: str) -> argparse.ArgumentParser:
    """The flags every script takes: ``--dataset``, ``--seed``, ``--quick``, ``--out-dir``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: digits, a few steps; writes <name>_quick.*")
    p.add_argument("--out-dir", type=Path, default=RESULTS,
                   help="where the JSON and PNG go (the committed ones: experiments/results)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the PNG from the JSON already in --out-dir")
    return p


def replot(name: str, args: argparse.Namespace,
           plot: Callable[[dict[str, Any], Path], None]) -> bool:
    """With ``--replot``: redraw ``<out-dir>/<name>[_quick].png`` from its JSON (no training)
    and return True; without it, False."""
    if not getattr(args, "replot", False):
        return False
    import matplotlib

    matplotlib.use("Agg")
    path = args.out_dir / f"{name}{'_quick' if args.quick else ''}.json"
    plot(json.loads(path.read_text()), path.with_suffix(".png"))
    print(f"redrew {path.with_suffix('.png')} from {path.name}")
    return True


def load(args: argparse.Namespace, train_size: int | None = None) -> Dataset:
    """The dataset (digits with ``--quick``), cut to its first ``train_size`` training
    examples when given (the book's ``x_train[:train_size]``); the test set stays whole."""
    data = load_dataset("digits" if args.quick else args.dataset, progress=False)
    if train_size is not None:
        data = data._replace(x_train=data.x_train[:train_size], t_train=data.t_train[:train_size])
    return data


def train_steps(model: Model, params: Any, optimizer: optax.GradientTransformation,
                data: Dataset, *, steps: int, batch_size: int,
                key: jax.Array) -> tuple[Any, np.ndarray]:
    """``steps`` training steps on batches drawn with replacement (the book's
    ``np.random.choice(N, batch_size)``) as one fused :func:`fnnet.train.make_epoch`;
    returns the final train state and the loss of every step (before its update)."""
    indices = batch_indices(key, num_examples=len(data.x_train), batch_size=batch_size,
                            num_steps=steps, sampling="replacement")
    state = init_train_state(model, params, optimizer)
    epoch = make_epoch(model, optimizer, donate=False)
    state, losses = epoch(state, jnp.asarray(data.x_train), jnp.asarray(data.t_train), indices)
    return state, np.asarray(losses)


def smooth_curve(x: np.ndarray) -> np.ndarray:
    """The book's ``smooth_curve`` (common/util.py): a length-11 Kaiser (β = 2) window,
    reflected at the ends, as the loss plots of chapter 6 draw it."""
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def plot_loss_curves(result: dict[str, Any], path: Path, *, ylim: tuple[float, float],
                     title: str) -> None:
    """The book's loss-curve figure: each run's smoothed training loss against iterations."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, run), marker in zip(result["runs"].items(), "o^sDv", strict=False):
        loss = smooth_curve(run["loss"])
        ax.plot(range(1, len(loss) + 1), loss, marker=marker, markevery=100, label=label)
    ax.set(xlabel="iterations", ylabel="loss", ylim=ylim, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out: Path, result: dict[str, Any], table: str | None) -> None:
    """``result`` as JSON at ``out`` and, given a markdown ``table``, the table beside it
    (``out`` with ``.md``) and on stdout; the paths written go to stderr."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if table is None:
        print(f"wrote {out}", file=sys.stderr)
        return
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out} and {out.with_suffix('.md').name}", file=sys.stderr)


def write(name: str, args: argparse.Namespace, result: dict[str, Any],
          plot: Callable[[dict[str, Any], Path], None]) -> Path:
    """``<out-dir>/<name>[_quick].json`` and ``.png``; returns the JSON path."""
    import matplotlib

    matplotlib.use("Agg")
    stem = f"{name}_quick" if args.quick else name
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{stem}.json"
    result = {**result, "environment": environment()}
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return path


def lm_corpus(args: argparse.Namespace) -> dict[str, Any]:
    """Word ids for the language-model scripts: PTB's train split where its file is found
    (``--data-dir``, ``$FNNET_DATA``, the cache), else its valid split trained on and the
    test split held out, saying which (``source``); with ``--quick`` a synthetic corpus (a
    random 40-word phrase of a 20-word vocabulary repeated with noise, 800 words).

    Returns ``{"train", "held_out", "test", "vocabulary", "source", "files"}``.
    """
    from fnnet.data import DatasetError, load_ptb

    if args.quick:
        rng = np.random.default_rng(0)
        phrase = rng.integers(0, 20, 40)
        ids = np.tile(phrase, 20)
        noise = rng.random(ids.size) < 0.1
        ids[noise] = rng.integers(0, 20, int(noise.sum()))
        ids = ids.astype(np.int32)
        return {"train": ids, "held_out": ids[:200], "held_out_name": "held-out",
                "test": ids[200:400], "vocabulary": 20, "source": "synthetic (--quick)",
                "files": []}
    data_dir = args.data_dir
    if data_dir is None and SHARED_DATA.is_dir():
        data_dir = SHARED_DATA
    try:
        corpus = load_ptb(data_dir=data_dir, download=False, progress=False)
        held_out = "valid"
    except DatasetError:
        corpus = load_ptb(data_dir=data_dir, download=False, progress=False,
                          train_split="valid")
        held_out = "test"
    source = (f"ptb, trained on its {corpus.train_split} split"
              + (" (ptb.train.txt not found)" if corpus.train_split == "valid" else ""))
    return {"train": corpus.train, "held_out": corpus.valid if held_out == "valid" else
            corpus.test, "held_out_name": held_out, "test": corpus.test,
            "vocabulary": corpus.vocabulary_size, "source": source, "files": list(corpus.files)}


def book_rnnlm(args: argparse.Namespace, vocabulary: int, epochs: int,
               quick_epochs: int) -> tuple[Model, dict[str, int], int, int, int]:
    """``(net, sizes, batch, time_size, epochs)`` of ``ch06/train_rnnlm.py`` (D = H = 100,
    batch 20 × time 35) for ``epochs``; with ``--quick`` a tiny one (D = H = 8, batch 4 ×
    time 5) for ``quick_epochs``."""
    from fnnet.nets import BOOK_RUNS, rnnlm

    book = BOOK_RUNS["rnnlm"]
    sizes = dict(wordvec_size=book.wordvec_size, hidden_size=book.hidden_size)
    batch, time_size = book.batch_size, book.time_size
    if args.quick:
        sizes, batch, time_size, epochs = dict(wordvec_size=8, hidden_size=8), 4, 5, quick_epochs
    return rnnlm(vocabulary, **sizes, time_size=time_size), sizes, batch, time_size, epochs


def lm_parser(doc: str) -> argparse.ArgumentParser:
    """The flags of the language-model scripts: ``--data-dir``, ``--seed``, ``--quick``,
    ``--out-dir``, ``--no-progress``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where ptb.*.txt are (default: ../shared/data beside the checkout if "
                        "it exists, else $FNNET_DATA and the cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a synthetic corpus, tiny model; writes <name>_quick.*")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--no-progress", action="store_true")
    return p


SETTLE_S = 0.25
"""Idle seconds before each timed run of a side-by-side benchmark: NumPy's BLAS threads keep
spinning after a call, and without a pause whichever implementation ran right after the
NumPy peer lost ~5 ms a step to them (~10% of the Rnnlm step; in the rotating order fnnet
manual followed it in two rounds of three)."""


def settle(quick: bool = False) -> None:
    """Wait :data:`SETTLE_S` before a timed run (not in a ``--quick`` smoke run)."""
    if not quick:
        time.sleep(SETTLE_S)


def matmul_rate(products: list[tuple[int, int, int]], repeats: int = 15) -> dict[str, Any]:
    """This CPU's float32 matmul speed now, on ``(m, k) · (k, n)`` products: each timed by
    NumPy (its BLAS) and by XLA (a jitted ``a @ b``), medians of ``repeats``. Returns the
    products' summed FLOPs over their summed best times as ``gflops`` (the faster library
    per product), with each library's own figure — the ceiling a step made of these
    products can reach, whoever runs it."""
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"numpy": [], "xla": []}
    flops = 0
    product = jax.jit(lambda a, b: a @ b)
    for m, k, n in products:
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        a_dev, b_dev = jax.device_put((a, b))
        runs = {"numpy": lambda a=a, b=b: a @ b,
                "xla": lambda a=a_dev, b=b_dev: product(a, b).block_until_ready()}
        for library, run in runs.items():
            run()
            samples = []
            for _ in range(repeats):
                begin = time.perf_counter()
                run()
                samples.append(time.perf_counter() - begin)
            times[library].append(statistics.median(samples))
        flops += 2 * m * k * n
    best = sum(min(pair) for pair in zip(times["numpy"], times["xla"], strict=True))
    return {"products": [list(p) for p in products], "flops": flops,
            "gflops": flops / best / 1e9,
            **{f"{library}_gflops": flops / sum(ts) / 1e9 for library, ts in times.items()}}


def matmul_floor(step_flops: float, rate: dict[str, Any], peer_ms: float,
                 speedup: float = 3.0) -> dict[str, Any]:
    """What ``speedup`` × a peer's step would ask: the step's matmul FLOPs at ``rate``
    (:func:`matmul_rate`) take ``floor_ms`` at least; ``peer_ms / speedup`` is the time the
    target allows, ``needed_gflops`` the matmul speed it needs with nothing else in the step."""
    allowed = peer_ms / speedup
    return {"step_matmul_flops": step_flops, "floor_ms": step_flops / rate["gflops"] / 1e6,
            "target_speedup": speedup, "target_ms": allowed,
            "needed_gflops": step_flops / allowed / 1e6, "measured_gflops": rate["gflops"]}


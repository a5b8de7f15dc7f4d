"""Benchmark fnnet's training step against its peers: one run, the same work for every row.

Every implementation trains the same network from the same initial parameters (fnnet's
init, converted to NumPy / PyTorch) on the same minibatches in the same order (one index
matrix ``(steps, batch)`` drawn once from a seeded NumPy RNG, a fresh permutation per epoch)
for the same number of steps with plain SGD at the same learning rate — so every row computes
the same thing and must reach the same test accuracy (up to float32 rounding).

Rows:

* fnnet, 8 rows ``fnnet-<grads>-<optimizer>-<loop>``: ``grads`` manual (hand custom_vjp
  rules) or autodiff (``jax.grad``) × ``optimizer`` handsgd (``fnnet.optim.sgd``) or optaxsgd
  (``optax.sgd``) × ``loop`` jit (``make_train_step`` once per step from a Python loop, the
  batch gathered on the device from the index matrix) or scan (``make_epoch``: one
  ``lax.scan`` per chunk of ``--chunk`` steps, by default one epoch);
* the "user's own loop" (issue 11), 2 rows ``fnnet-<grads>-userloop``: the model's ``loss``
  in the plainest loop a user writes (``experiments/user_loop.py``): ``jax.grad`` and a plain
  SGD ``jax.tree.map`` in a jitted ``lax.scan`` over the same chunks, no unroll;
* peers (``experiments/peers/``): numpy-book (the book's layer classes), torch-eager and
  torch-compile (``nn.Sequential`` + ``torch.optim.SGD``; skipped when torch is missing),
  with ``--device gpu`` also torch-cuda-graph (the whole step captured once in a CUDA graph
  and replayed per batch, PyTorch's strongest practice for small steps),
  plain-jax-jit (``jax.grad`` + ``jax.jit`` of a hand-written loss), optax-jit (the same loss
  with ``optax.sgd``); ``--quick`` skips torch-compile (~25 s to compile on 2 cores);
* with ``--device gpu`` or ``--bf16``: bfloat16 variants (params and gradients float32, ``x``
  and the params cast to bfloat16 inside the loss — fnnet's ``mixed_precision`` — so the
  matmuls run in bf16) of the four hand-SGD fnnet rows and of plain-jax-jit, named
  ``…-bf16``. The GPU path is untested so far.

Timing: each row compiles and warms up first (JAX: AOT ``lower().compile()``, reported as
``compile_s``; torch.compile and the peers without a compiler: their first step), then runs
all steps, synchronised at the end; the median over ``--repeats`` runs is reported, and the
compile time of the first (cold) run — later runs may hit caches (torch.compile's does).

Achieved GFLOP/s counts ``6 · batch · weights`` FLOPs per step (biases excluded; this counts
the input gradient of the first layer, which only numpy-book computes, so the others do a
little less work than credited) and is compared with a large fp32 matmul measured in the same
run (NumPy and JAX, the larger; bf16 rows: JAX's bf16 matmul). Test accuracy is computed from
each row's final parameters by one shared NumPy forward pass. The machine's 1-minute load
average is recorded: where others are using the machine, multi-threaded BLAS/OpenMP in the
NumPy and PyTorch rows can slow down many-fold (see ``--threads``).

Output: ``experiments/runs/benchmark-<device>-<config>[-quick|-<N>steps][-partial].json``
(or ``--out``) and a markdown table next to it (``.md``); a progress line per row on stderr.

    python experiments/benchmark.py --quick            # ~300 steps, 1 repeat: a smoke run
    python experiments/benchmark.py --config small     # the 784-50-10 book net, 3 repeats
    python experiments/benchmark.py --config big --impl scan --impl numpy --impl torch
    python experiments/benchmark.py --device gpu --config huge

Peers' extras: ``pip install torch==2.13.0`` (optional; the torch rows are skipped without it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import RESULTS, write_results
from peers import PairParams, jax_common, numpy_book, optax_only, plain_jax
from user_loop import user_epoch

import fnnet
from fnnet.data import Dataset, DatasetError, load_dataset
from fnnet.optim import sgd as hand_sgd
from fnnet.parallel import usable_cores
from fnnet.precision import mixed_precision
from fnnet.train import TrainState, init_train_state, make_epoch, make_train_step

Trainer = Callable[[PairParams, np.ndarray, np.ndarray, np.ndarray, float, str],
                   tuple[PairParams, float, float]]

# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One benchmark configuration: the network, the batch and how long to train."""

    name: str
    hidden: tuple[int, ...]
    activation: str
    weight_init: str | float
    batch_size: int
    lr: float
    steps: int
    repeats: int
    gpu_only: bool = False


CONFIGS = {
    "small": Config("small", (50,), "sigmoid", "normal", 100, 0.1, 10_000, 3),
    "big": Config("big", (1024, 1024), "relu", "he", 256, 0.1, 2_000, 1),
    "huge": Config("huge", (4096, 4096), "relu", "he", 4096, 0.1, 1_000, 1, gpu_only=True),
}
QUICK_STEPS = 100
INIT_NAMES = {"normal": "N(0, 0.01²)", "he": "He", "xavier": "Xavier"}


@dataclass(frozen=True)
class Impl:
    """A row: its name, its trainer, where it runs, and whether it may fail (marked error)."""

    name: str
    train: Trainer
    runs_on: str  # "device" (the JAX device) or "cpu" (NumPy, PyTorch on CPU)
    dtype: str = "float32"
    optional: bool = False
    threads: int | None = None  # CPU threads of a NumPy / PyTorch row


# --------------------------------------------------------------------------- fnnet rows


def to_fnnet(params: PairParams) -> dict[str, dict[str, np.ndarray]]:
    """``[(W, b), …]`` → fnnet's ``{"affine1": {"W": W, "b": b}, …}``."""
    return {f"affine{i}": {"W": W, "b": b} for i, (W, b) in enumerate(params, start=1)}


def from_fnnet(params: dict[str, dict[str, Any]]) -> PairParams:
    """fnnet's ``{"affine1": {"W", "b"}, …}`` → ``[(W, b), …]`` as NumPy arrays."""
    return [(np.asarray(params[f"affine{i}"]["W"]), np.asarray(params[f"affine{i}"]["b"]))
            for i in range(1, len(params) + 1)]


def train_scanned(epoch: Callable, fresh_carry: Callable[[], tuple], x: np.ndarray,
                  t: np.ndarray, indices: np.ndarray, chunk: int) -> tuple[tuple, float, float]:
    """Run ``epoch(*carry, x, t, indices_chunk) -> (*carry, losses)`` over ``indices`` in
    chunks of ``chunk`` steps; return the final carry, the timed seconds and compile seconds.

    Each distinct chunk shape is compiled ahead and run once on a throwaway carry (warm-up)
    before the timed run, which starts from a fresh carry.
    """
    x_dev, t_dev = jax.device_put((x, t))
    chunks = [jax.device_put(indices[a:a + chunk]) for a in range(0, len(indices), chunk)]
    compiled: dict[tuple[int, ...], Callable] = {}
    compile_s = 0.0
    for rows in chunks:
        if rows.shape not in compiled:
            run, seconds = jax_common.compile_ahead(epoch, *fresh_carry(), x_dev, t_dev, rows)
            compiled[rows.shape], compile_s = run, compile_s + seconds
            jax.block_until_ready(run(*fresh_carry(), x_dev, t_dev, rows))  # warm-up
    carry = jax.block_until_ready(fresh_carry())
    start = time.perf_counter()
    for rows in chunks:
        carry = compiled[rows.shape](*carry, x_dev, t_dev, rows)[:-1]
    jax.block_until_ready(carry)
    return carry, time.perf_counter() - start, compile_s


def fnnet_trainer(grads: str, optimizer: str, loop: str, chunk: int,
                  dtype: str = "float32") -> Trainer:
    """A trainer (see :mod:`peers`) for one fnnet row, built on the public fnnet.train API."""
    def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray,
              lr: float, activation: str) -> tuple[PairParams, float, float]:
        model = fnnet.multi_layer_net(params[0][0].shape[0], [W.shape[1] for W, _ in params[:-1]],
                                      params[-1][0].shape[1], activation=activation, grads=grads)
        if dtype == "bfloat16":
            model = mixed_precision(model)  # fnnet's --precision bf16
        opt = hand_sgd(lr) if optimizer == "handsgd" else optax.sgd(lr)
        initial = to_fnnet(params)

        def fresh_carry() -> tuple[TrainState]:
            return (init_train_state(model, jax.device_put(initial), opt),)

        if loop == "jit":
            (final,), seconds, compile_s = jax_common.train_per_step(
                make_train_step(model, opt), fresh_carry, x, t, indices)
        else:
            (final,), seconds, compile_s = train_scanned(
                make_epoch(model, opt), fresh_carry, x, t, indices, chunk)
        return from_fnnet(final.params), seconds, compile_s

    return train


def user_loop_trainer(grads: str, chunk: int) -> Trainer:
    """A trainer for the "user's own loop" (issue 11, ``experiments/user_loop.py``): not
    fnnet.train but ``jax.grad(model.loss)`` and a plain SGD ``tree.map`` in a jitted
    ``lax.scan`` (no unroll) over chunks of ``chunk`` index batches."""
    def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray,
              lr: float, activation: str) -> tuple[PairParams, float, float]:
        model = fnnet.multi_layer_net(params[0][0].shape[0], [W.shape[1] for W, _ in params[:-1]],
                                      params[-1][0].shape[1], activation=activation, grads=grads)
        epoch = user_epoch(model.loss, lr)
        with_outputs = jax.jit(lambda p, X, T, batches: (epoch(p, X, T, batches), None))
        initial = to_fnnet(params)
        (final,), seconds, compile_s = train_scanned(
            with_outputs, lambda: (jax.device_put(initial),), x, t, indices, chunk)
        return from_fnnet(final), seconds, compile_s

    return train


def fnnet_impls(chunk: int, bf16: bool) -> list[Impl]:
    """The 8 fnnet rows and the 2 user-loop rows, plus 4 bfloat16 rows (hand SGD) with
    ``bf16``."""
    rows = [Impl(f"fnnet-{grads}-{opt}-{loop}", fnnet_trainer(grads, opt, loop, chunk), "device")
            for grads in ("manual", "autodiff") for opt in ("handsgd", "optaxsgd")
            for loop in ("jit", "scan")]
    rows += [Impl(f"fnnet-{grads}-userloop", user_loop_trainer(grads, chunk), "device")
             for grads in ("manual", "autodiff")]
    if bf16:
        rows += [Impl(f"fnnet-{grads}-handsgd-{loop}-bf16",
                      fnnet_trainer(grads, "handsgd", loop, chunk, "bfloat16"), "device",
                      "bfloat16")
                 for grads in ("manual", "autodiff") for loop in ("jit", "scan")]
    return rows


# --------------------------------------------------------------------------- peer rows


def peer_impls(cfg: Config, gpu: bool, threads: int, bf16: bool = False,
               ) -> tuple[list[Impl], list[dict[str, str]]]:
    """The peer rows that can run here, and ``{"impl", "reason"}`` for those skipped.

    ``threads``: BLAS threads of numpy-book and intra-op threads of the PyTorch rows;
    ``bf16``: add plain-jax-jit in bfloat16.
    """
    rows: list[Impl] = []
    skipped: list[dict[str, str]] = []
    cpu_reason = f"CPU-only peer skipped for --config {cfg.name} (hours on a CPU)"
    if cfg.gpu_only:
        skipped.append({"impl": "numpy-book", "reason": cpu_reason})
    else:
        rows.append(Impl("numpy-book", partial(numpy_book.train, threads=threads), "cpu",
                         threads=threads))
    if importlib.util.find_spec("torch") is None:
        reason = "torch not installed (pip install torch==2.13.0)"
        skipped += [{"impl": name, "reason": reason}
                    for name in ("torch-eager", "torch-compile", "torch-cuda-graph")]
    else:
        import torch
        from peers import torch_nn

        device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        if device == "cpu" and cfg.gpu_only:
            skipped += [{"impl": n, "reason": cpu_reason} for n in ("torch-eager", "torch-compile")]
        else:
            runs_on = "device" if device == "cuda" else "cpu"
            train = partial(torch_nn.train, device=device, threads=threads)
            rows.append(Impl("torch-eager", train, runs_on, threads=threads))
            rows.append(Impl("torch-compile", partial(train, compile_model=True), runs_on,
                             optional=True, threads=threads))
        if device == "cuda":
            rows.append(Impl("torch-cuda-graph", partial(train, cuda_graph=True), "device",
                             optional=True))
        else:
            reason = ("CUDA graphs need a CUDA device: this torch sees none" if gpu else
                      "CUDA graphs need a CUDA device (--device gpu)")
            skipped.append({"impl": "torch-cuda-graph", "reason": reason})
    rows.append(Impl("plain-jax-jit", plain_jax.train, "device"))
    rows.append(Impl("optax-jit", optax_only.train, "device"))
    if bf16:
        rows.append(Impl("plain-jax-jit-bf16", partial(plain_jax.train, compute_dtype="bfloat16"),
                         "device", "bfloat16"))
    return rows, skipped


# --------------------------------------------------------------------------- data and init


def synthetic_dataset(seed: int, *, train: int = 60_000, test: int = 10_000,
                      features: int = 784, classes: int = 10) -> Dataset:
    """Fashion-MNIST-shaped data, seeded: labels uniform over ``classes``; each image is
    40 % its class's random prototype, 60 % uniform noise (pixels in [0, 1], learnable)."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, train + test).astype(np.int32)
    prototypes = rng.random((classes, features), dtype=np.float32)
    noise = rng.random((train + test, features), dtype=np.float32)
    x = np.float32(0.4) * prototypes[t] + np.float32(0.6) * noise
    return Dataset("synthetic", x[:train], t[:train], x[train:], t[train:], classes, (28, 28))


def load_data(name: str, seed: int) -> tuple[Dataset, str]:
    """The dataset and a note on where it came from (synthetic when Fashion-MNIST is absent)."""
    if name == "synthetic":
        return synthetic_dataset(seed), "synthetic (requested)"
    try:
        return load_dataset(name, download=False, progress=False), "files found locally"
    except DatasetError:
        return synthetic_dataset(seed), f"synthetic: {name} files not found (download=False)"


def make_indices(num_examples: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch_size)`` int32: per epoch a fresh permutation cut into full batches
    (the ``N mod batch_size`` remainder of each epoch dropped), epochs concatenated."""
    rng = np.random.default_rng(seed)
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} examples")
    epochs = -(-steps // per_epoch)
    rows = [rng.permutation(num_examples)[: per_epoch * batch_size].reshape(per_epoch, -1)
            for _ in range(epochs)]
    return np.concatenate(rows)[:steps].astype(np.int32)


def init_params(cfg: Config, input_size: int, num_classes: int, seed: int) -> PairParams:
    """fnnet's initial parameters for ``cfg`` (on the CPU, so any device gets the same)."""
    model = fnnet.multi_layer_net(input_size, list(cfg.hidden), num_classes,
                                  activation=cfg.activation, weight_init=cfg.weight_init)
    with jax.default_device(jax.devices("cpu")[0]):
        return from_fnnet(model.init(jax.random.key(seed)))


def numpy_evaluate(params: PairParams, x: np.ndarray, t: np.ndarray, activation: str,
                   batch_size: int = 2000) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy of ``params`` on ``(x, t)``, in NumPy float32:
    the one evaluation every row's final parameters go through."""
    loss_sum, hits = 0.0, 0
    for start in range(0, len(x), batch_size):
        h, labels = x[start:start + batch_size], t[start:start + batch_size]
        for i, (W, b) in enumerate(params):
            h = h @ W.astype(np.float32) + b.astype(np.float32)
            if i < len(params) - 1:
                h = 1 / (1 + np.exp(-h)) if activation == "sigmoid" else np.maximum(h, 0)
        shifted = h - h.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(labels)), labels].sum())
        hits += int((h.argmax(axis=1) == labels).sum())
    return loss_sum / len(x), hits / len(x)


def weight_count(params: PairParams) -> int:
    """Number of weights, biases excluded."""
    return sum(W.size for W, _ in params)


# --------------------------------------------------------------------------- environment


def matmul_peak(device: jax.Device, size: int, tries: int, bf16: bool) -> dict[str, Any]:
    """GFLOP/s of a ``size²`` fp32 matmul, best of ``tries``: NumPy and JAX (jitted, on
    ``device``), plus bfloat16 through JAX on a GPU. ``2·size³`` FLOPs per product. NumPy
    (the CPU) multiplies at most 2048² (``numpy_size``): a GPU-sized product would take
    minutes there."""
    flops = 2 * size**3
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    cpu_size = min(size, 2048)
    a_cpu, b_cpu = a[:cpu_size, :cpu_size], b[:cpu_size, :cpu_size]
    numpy_s = min(_timed(lambda: a_cpu @ b_cpu) for _ in range(tries))
    matmul = jax.jit(jnp.matmul)
    peak = {"size": size, "tries": tries, "numpy_size": cpu_size,
            "numpy": 2 * cpu_size**3 / numpy_s / 1e9}
    dtypes = [("jax", jnp.float32)] + ([("jax_bf16", jnp.bfloat16)] if bf16 else [])
    for key, dtype in dtypes:
        a_dev, b_dev = jax.device_put((a.astype(dtype), b.astype(dtype)), device)
        matmul(a_dev, b_dev).block_until_ready()
        best = min(_timed(lambda: matmul(a_dev, b_dev).block_until_ready())  # noqa: B023
                   for _ in range(tries))
        peak[key] = flops / best / 1e9
    return peak


def matmul_only(params: PairParams, batch_size: int, device: jax.Device, steps: int = 600,
                tries: int = 5, *, with_numpy: bool = True) -> dict[str, float | None]:
    """µs per training step spent in the step's matmuls alone, at this config's shapes.

    Per layer ``l`` with input ``h`` (batch × in) and weights ``W`` (in × out): the forward
    ``h·W``, the weight gradient ``hᵀ·g`` and, above the first layer, ``g·Wᵀ`` — the matmuls
    any implementation must do. JAX: ``steps`` of them in one jitted ``lax.scan`` over
    contiguous random inputs (the weights are updated, so nothing is hoisted out of the
    loop); NumPy: a Python loop over the same products, ``with_numpy`` only (the caller
    passes it for CPU runs: a device config's floor is the device's, and NumPy on the host
    would measure another machine, for hours at the ``huge`` shapes). Best of ``tries``.
    """
    rng = np.random.default_rng(1)
    weights = [np.asarray(W, np.float32) for W, _ in params]
    xs = rng.standard_normal((steps, batch_size, weights[0].shape[0]), dtype=np.float32)
    grads = [rng.standard_normal((batch_size, W.shape[1]), dtype=np.float32) for W in weights]

    def products(x, Ws, matmul, transpose):
        h, new = x, []
        for layer, (W, g) in enumerate(zip(Ws, grads, strict=True)):
            out = matmul(h, W)
            dW = matmul(transpose(h), g)
            if layer:
                out = out + matmul(g, transpose(W))[:, : out.shape[1]].sum()
            new.append(W - 1e-9 * dW)
            h = out[:, : Ws[layer + 1].shape[0]] if layer + 1 < len(Ws) else out
        return new

    @jax.jit
    def scanned(Ws, xs):
        return jax.lax.scan(lambda Ws, x: (products(x, Ws, jnp.matmul, jnp.transpose), None),
                            Ws, xs)[0]

    Ws_dev, xs_dev = jax.device_put((weights, xs), device)
    jax.block_until_ready(scanned(Ws_dev, xs_dev))
    jax_s = min(_timed(lambda: jax.block_until_ready(scanned(Ws_dev, xs_dev)))
                for _ in range(tries))
    floor = {"jax": 1e6 * jax_s / steps, "numpy": None}
    if with_numpy:
        numpy_steps = min(steps, 200)
        numpy_s = min(_timed(lambda: [products(x, weights, np.matmul, np.transpose)
                                      for x in xs[:numpy_steps]]) for _ in range(tries))
        floor["numpy"] = 1e6 * numpy_s / numpy_steps
    return floor


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (others' work shows up here), if known."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def environment(device: jax.Device) -> dict[str, Any]:
    """Versions, CPU, cores and the JAX device the rows ran on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "numpy": np.__version__,
        "optax": _version("optax"),
        "torch": _version("torch"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "device": (device.platform if device.device_kind == device.platform
                   else f"{device.platform}: {device.device_kind}"),
        "loadavg_end": load_average(),
    }


def jax_device(kind: str) -> jax.Device:
    """The first JAX device of ``kind`` (``"cpu"`` or ``"gpu"``); exit with a clear message
    when JAX sees no GPU."""
    try:
        return jax.devices(kind)[0]
    except RuntimeError as error:
        raise SystemExit(f"--device {kind}: JAX sees no {kind.upper()} ({error}). Install a "
                         f"GPU build of jax (e.g. pip install -U 'jax[cuda12]') or use "
                         f"--device cpu.") from error


# --------------------------------------------------------------------------- running rows


@dataclass
class Setup:
    """What every row shares: the config, data, initial params, index matrix, peaks."""

    cfg: Config
    data: Dataset
    params: PairParams
    indices: np.ndarray
    peak: dict[str, Any]
    device_platform: str

    @property
    def flops_per_step(self) -> int:
        return 6 * self.cfg.batch_size * weight_count(self.params)

    def peak_for(self, impl: Impl) -> float:
        """The matmul peak a row is compared with: bf16 rows with JAX's bf16 matmul; CPU rows
        with the larger of NumPy's and (on a CPU run) JAX's; GPU rows with JAX's."""
        if impl.dtype == "bfloat16" and "jax_bf16" in self.peak:
            return self.peak["jax_bf16"]
        if impl.runs_on == "cpu" and self.device_platform != "cpu":
            return self.peak["numpy"]
        if self.device_platform != "cpu":
            return self.peak["jax"]
        return max(self.peak["numpy"], self.peak["jax"])


def run_impl(impl: Impl, setup: Setup, repeats: int) -> dict[str, Any]:
    """Train ``repeats`` times with ``impl``; the row: median time, rates, compile, accuracy.

    A failure becomes ``{"impl", "error"}`` (traceback on stderr) so one row cannot sink a run.
    """
    cfg = setup.cfg
    row: dict[str, Any] = {"impl": impl.name, "runs_on": impl.runs_on, "dtype": impl.dtype}
    if impl.threads is not None:
        row["threads"] = impl.threads
    times, compiles = [], []
    try:
        for _ in range(repeats):
            final, seconds, compile_s = impl.train(setup.params, setup.data.x_train,
                                                   setup.data.t_train, setup.indices, cfg.lr,
                                                   cfg.activation)
            times.append(seconds)
            compiles.append(compile_s)
    except Exception as error:  # reported in the row: one failure does not end the run
        traceback.print_exc(file=sys.stderr)
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        return row
    steps, median_s = len(setup.indices), statistics.median(times)
    test_loss, test_acc = numpy_evaluate(final, setup.data.x_test, setup.data.t_test,
                                         cfg.activation)
    gflops = setup.flops_per_step * steps / median_s / 1e9
    row.update({
        "steps": steps,
        "repeats": repeats,
        "seconds": times,
        "median_s": median_s,
        "us_per_step": median_s / steps * 1e6,
        "steps_per_s": steps / median_s,
        "samples_per_s": steps * cfg.batch_size / median_s,
        "gflops": gflops,
        "pct_of_peak": 100 * gflops / setup.peak_for(impl),
        "compile_s": compiles[0],  # the first, cold one: later ones may hit caches
        "compile_s_all": compiles,
        "test_loss": test_loss,
        "test_acc": test_acc,
    })
    return row


def describe(row: dict[str, Any]) -> str:
    """One progress line for a finished row."""
    if "error" in row:
        return f"ERROR {row['error']}"
    return (f"{row['steps_per_s']:,.0f} steps/s ({row['us_per_step']:.1f} µs/step, median of "
            f"{row['repeats']}), compile {row['compile_s']:.2f} s, test acc {row['test_acc']:.4f}")


# --------------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table with a header of settings and a footer of notes."""
    c, peak, env = result["config"], result["matmul_peak_gflops"], result["environment"]
    layers = "-".join(str(n) for n in c["layers"])
    peak_text = ", ".join(f"{k} {peak[k]:,.1f}" for k in ("numpy", "jax", "jax_bf16") if k in peak)
    lines = [
        f"# fnnet benchmark: {c['name']} on {env['device']}",
        "",
        f"{layers} {c['activation']}, init {INIT_NAMES.get(c['weight_init'], c['weight_init'])}, "
        f"batch {c['batch_size']}, "
        f"lr {c['lr']}, {c['steps']:,} steps, median of {c['repeats']} run(s); "
        f"data: {c['dataset']} ({c['dataset_source']}). "
        f"FLOPs/step = 6·batch·weights = {c['flops_per_step'] / 1e6:,.1f} M. "
        f"Matmul peak ({peak['size']}² fp32, NumPy {peak.get('numpy_size', peak['size'])}², "
        f"best of {peak['tries']}), GFLOP/s: {peak_text}. "
        f"The step's matmuls alone at these shapes: "
        f"{result['matmul_only_us_per_step']['jax']:,.1f} µs/step through JAX" + (
            f", {result['matmul_only_us_per_step']['numpy']:,.1f} through NumPy."
            if result["matmul_only_us_per_step"]["numpy"] is not None else
            " (on the device; NumPy's floor is measured on CPU runs only)."),
        "",
        "| implementation | µs/step | steps/s | samples/s | achieved GFLOP/s "
        "| % of measured matmul peak | compile s | final test acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['impl']} | error: {row['error'][:80]} | | | | | | |")
            continue
        lines.append(
            f"| {row['impl']} | {row['us_per_step']:,.1f} | {row['steps_per_s']:,.0f} "
            f"| {row['samples_per_s']:,.0f} | {row['gflops']:,.1f} | {row['pct_of_peak']:.1f} "
            f"| {row['compile_s']:.2f} | {row['test_acc']:.4f} |")
    lines.append("")
    lines += [f"- skipped {s['impl']}: {s['reason']}" for s in result["skipped"]]
    threads = sorted({row["threads"] for row in result["rows"] if "threads" in row})
    if threads:
        lines.append(f"- NumPy / PyTorch rows: {', '.join(map(str, threads))} CPU thread(s).")
    load = [env.get("loadavg_start"), env.get("loadavg_end")]
    load_text = " → ".join(f"{x[0]:.1f}" for x in load if x)
    lines.append(f"- {env['cpu']}, {env['cores_usable']} usable cores (1-min load average "
                 f"{load_text or 'unknown'}); python {env['python']}, jax {env['jax']}, "
                 f"numpy {env['numpy']}, optax {env['optax']}, torch {env['torch']}; "
                 f"{result['date']}")
    return "\n".join(lines) + "\n"


def default_out(args: argparse.Namespace, cfg: Config) -> Path:
    """``runs/benchmark-<device>-<config>[-quick|-<N>steps][-partial].json``: runs that
    are not full never overwrite a full run's file."""
    suffix = "-quick" if args.quick else (f"-{cfg.steps}steps" if args.steps else "")
    suffix += "-partial" if args.impl else ""
    return RESULTS / f"benchmark-{args.device}-{cfg.name}{suffix}.json"


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small",
                        help="small: 784-50-10 sigmoid, init N(0, 0.01²), batch 100, lr 0.1, "
                             "10 000 steps, 3 repeats. big: 784-1024-1024-10 ReLU, He init, "
                             "batch 256, lr 0.1, 2 000 steps, 1 repeat. huge: 784-4096-4096-10 "
                             "ReLU, He, batch 4096, lr 0.1, 1 000 steps, 1 repeat (GPU only; "
                             "CPU peers skipped). Default: small.")
    parser.add_argument("--steps", type=int, help="override the config's number of steps")
    parser.add_argument("--repeats", type=int,
                        help="timed runs per row, the median reported (default: the config's)")
    parser.add_argument("--impl", action="append", metavar="SUBSTRING", default=[],
                        help="run only rows whose name contains SUBSTRING (repeatable: any "
                             "match); e.g. --impl fnnet-manual --impl numpy")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: small config, {QUICK_STEPS} steps, 1 repeat, a "
                             f"smaller matmul-peak measurement")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where the JAX rows run; gpu adds bfloat16 rows and allows "
                             "--config huge (default: cpu)")
    parser.add_argument("--bf16", action="store_true",
                        help="add the bfloat16 rows on a CPU run too (fnnet's --precision "
                             "bf16: float32 params, bfloat16 matmuls; slow on most CPUs)")
    parser.add_argument("--dataset", choices=("fashion-mnist", "synthetic"),
                        default="fashion-mnist",
                        help="fashion-mnist when its files are found (never downloaded), "
                             "else synthetic data of the same shape (default: fashion-mnist)")
    parser.add_argument("--chunk", type=int,
                        help="steps per make_epoch call in the scan rows (default: one epoch, "
                             "N // batch)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="CPU threads of the NumPy (BLAS) and PyTorch rows (default: the "
                             "usable cores). On a machine others are loading, multi-threaded "
                             "BLAS/OpenMP can collapse (spinning threads); --threads 1 shows "
                             "whether that is happening")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the init, the batch order and synthetic data")
    parser.add_argument("--out", type=Path,
                        help="JSON path (the .md goes next to it); default: "
                             "experiments/runs/benchmark-<device>-<config>[…].json")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    if args.quick and args.config != "small":
        parser.error("--quick runs the small config; drop --config or --quick")
    if args.config == "huge" and args.device != "gpu":
        parser.error("--config huge needs --device gpu")
    for name in ("steps", "repeats", "chunk", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1; got {value}")
    return args


def resolve_config(args: argparse.Namespace) -> Config:
    """The config with ``--quick``, ``--steps`` and ``--repeats`` applied."""
    cfg = CONFIGS[args.config]
    if args.quick:
        cfg = replace(cfg, steps=QUICK_STEPS, repeats=1)
    if args.steps:
        cfg = replace(cfg, steps=args.steps)
    if args.repeats:
        cfg = replace(cfg, repeats=args.repeats)
    return cfg


def select(impls: list[Impl], patterns: list[str]) -> list[Impl]:
    """The rows whose name contains any of ``patterns`` (all rows when there are none)."""
    return [i for i in impls if not patterns or any(p in i.name for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a non-optional row failed."""
    args = parse_args(argv)
    cfg = resolve_config(args)
    gpu = args.device == "gpu"
    device = jax_device(args.device)
    data, source = load_data(args.dataset, args.seed)
    chunk = args.chunk or len(data.x_train) // cfg.batch_size
    bf16 = gpu or args.bf16
    peers, skipped = peer_impls(cfg, gpu, args.threads, bf16)
    if args.quick and not any("compile" in p for p in args.impl):
        skipped += [{"impl": i.name, "reason": "--quick skips it (torch.compile takes ~25 s to "
                     "compile on 2 cores); --impl torch-compile runs it"}
                    for i in peers if i.name == "torch-compile"]
        peers = [i for i in peers if i.name != "torch-compile"]
    impls = select(fnnet_impls(chunk, bf16) + peers, args.impl)
    skipped = [s for s in skipped if not args.impl or any(p in s["impl"] for p in args.impl)]
    if args.list or not impls:
        print("\n".join(i.name for i in impls) or f"no row matches {args.impl}")
        return 0 if impls else 2
    params = init_params(cfg, data.x_train.shape[1], data.num_classes, args.seed)
    indices = make_indices(len(data.x_train), cfg.batch_size, cfg.steps, args.seed)
    size, tries = (1024, 3) if args.quick else ((8192, 5) if gpu else (2048, 5))
    load_start = load_average()
    with jax.default_device(device):
        peak = matmul_peak(device, size, tries, bf16)
        floor = matmul_only(params, cfg.batch_size, device, tries=2 if args.quick else 5,
                            with_numpy=not gpu)
        setup = Setup(cfg, data, params, indices, peak, device.platform)
        print(f"{cfg.name}: {len(impls)} rows × {cfg.repeats} run(s) of {cfg.steps:,} steps on "
              f"{device.device_kind}; data {data.name}; matmul peak " +
              ", ".join(f"{k} {v:,.0f}" for k, v in peak.items() if k.startswith(("n", "j"))) +
              " GFLOP/s", file=sys.stderr, flush=True)
        rows = []
        for n, impl in enumerate(impls, start=1):
            print(f"[{n}/{len(impls)}] {impl.name}: ", end="", file=sys.stderr, flush=True)
            rows.append(run_impl(impl, setup, cfg.repeats))
            print(describe(rows[-1]), file=sys.stderr, flush=True)
    result = {
        "config": {**asdict(cfg), "layers": [data.x_train.shape[1], *cfg.hidden,
                                             data.num_classes],
                   "dataset": data.name, "dataset_source": source, "train_examples":
                   len(data.x_train), "test_examples": len(data.x_test), "seed": args.seed,
                   "scan_chunk": chunk, "weights": weight_count(params),
                   "flops_per_step": setup.flops_per_step, "quick": args.quick},
        "matmul_peak_gflops": peak,
        "matmul_only_us_per_step": floor,
        "environment": {**environment(device), "loadavg_start": load_start},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rows": rows,
        "skipped": skipped,
    }
    write_results(args.out or default_out(args, cfg), result, markdown(result))
    failed = [r for r, i in zip(rows, impls, strict=True) if "error" in r and not i.optional]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

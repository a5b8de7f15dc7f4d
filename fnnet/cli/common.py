"""What every ``fnnet`` command shares: exit codes, the parser, usage errors, argument types
and the checks made before any work starts.

The argument types (:func:`positive_int`, :func:`seed`, …) and :class:`Parser` are public: a
script built on fnnet may use them to take the same flags the same way. Nothing here imports
JAX at module level, so ``fnnet --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by SIGPIPE
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32: below it, --lr rounds away
SEED_MAX = 2**32 - 1  # jax.random.key keeps 32 bits of the seed without x64


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``fnnet train: error: …``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` except where the default is None (the help text says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)

    def _format_action(self, action: argparse.Action) -> str:
        """A flag without help text still shows its default (argparse skips it otherwise)."""
        if (action.help is None and action.option_strings and action.nargs != 0
                and action.default not in (None, argparse.SUPPRESS)):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


class UsageError(Exception):
    """A flag value that parses but makes no sense (reported as a usage error, exit 2)."""


class JoinError(Exception):
    """A multi-host run could not join its coordinator (exit status 1)."""


# --- argument types ------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def device_count(text: str) -> int | str:
    """``all`` or an integer ≥ 1."""
    return text if text == "all" else positive_int(text)


def positive_float(text: str) -> float:
    """A number > 0 in float32's normal range ``[1.18e-38, 3.4e38]``."""
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    if value < FLOAT32_TINY:
        raise argparse.ArgumentTypeError(
            f"must be at least {FLOAT32_TINY:.3g} (float32's smallest normal number), got {text}")
    if value > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"must be at most {FLOAT32_MAX:.3g} (float32's largest number), got {text}")
    return value


def seed(text: str) -> int:
    """An integer in ``[0, 2³² − 1]`` (the bits ``jax.random.key`` keeps)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number in ``[0, 3.4e38]``."""
    value = float(text)
    if not 0 <= value <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 and <= {FLOAT32_MAX:.3g}, "
                                         f"got {text}")
    return value


def fraction(text: str) -> float:
    """A number in ``[0, 1)``."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def open_fraction(text: str) -> float:
    """A number in ``(0, 1)``."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text}")
    return value


# --- checks before any work ----------------------------------------------------------------


def check_writable(flag: str, path: Path | None, *, directory: bool = False) -> None:
    """Fail before training, not after it, when an output cannot be written."""
    if path is None:
        return
    folder = path if directory else path.parent
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, expected a file path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot create {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: {folder} is not writable")


def require_matplotlib() -> None:
    """A usage error when ``--plot`` is asked for without matplotlib installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise UsageError("--plot needs matplotlib: pip install 'fnnet[plot]'") from error


def estimated_bytes(sizes: list[int], batch: int, itemsize: int, copies: int) -> int:
    """Memory a dense net of layer ``sizes`` needs: ``copies`` copies of the parameters
    (params, gradients, optimiser state, the updated params…) plus the activations of a
    batch (each layer's output and its gradient) — a lower bound, in bytes."""
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    activations = 2 * batch * sum(sizes)
    return itemsize * (copies * params + activations)


def available_bytes(device: Any = None) -> tuple[int, str] | None:
    """The device's memory limit (GPU) or the host's physical memory, and its name."""
    import jax

    device = device or jax.devices()[0]
    with contextlib.suppress(Exception):
        limit = (device.memory_stats() or {}).get("bytes_limit")
        if limit:
            return int(limit), f"{device.platform} device memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


def check_memory(sizes: list[int], batch: int, itemsize: int, copies: int,
                 device: Any = None) -> None:
    """A usage error, before anything is built, when the model cannot fit in memory."""
    needed = estimated_bytes(sizes, batch, itemsize, copies)
    available = available_bytes(device)
    if available is not None and needed > available[0]:
        raise UsageError(f"the model {'-'.join(map(str, sizes))} needs about "
                         f"{needed / 2**30:,.1f} GiB (parameters, gradients, optimiser state "
                         f"and activations at batch {batch}), more than the "
                         f"{available[0] / 2**30:,.1f} GiB of {available[1]}; use smaller "
                         f"--hidden sizes")


def check_device_count(devices: int | str | None) -> None:
    """A usage error naming ``--devices`` when it asks for more devices than JAX sees."""
    import jax

    if isinstance(devices, int) and devices > jax.device_count():
        raise UsageError(f"--devices {devices}: JAX sees {jax.device_count()} device"
                         f"{'s' if jax.device_count() > 1 else ''} ({jax.devices()}); give at "
                         f"most that many, or all")


def select_device(kind: str | None):
    """The first JAX device of ``kind`` (``cpu``/``gpu``), None for JAX's default."""
    import jax

    if kind is None:
        return None
    try:
        return jax.devices(kind)[0]
    except RuntimeError as error:
        raise UsageError(
            f"--device {kind}: JAX sees no {kind} device (it has {jax.devices()}); for NVIDIA "
            f"GPUs install a CUDA build of JAX, e.g. pip install 'jax[cuda12]'") from error


# --- the compilation cache -----------------------------------------------------------------


def compile_cache_dir() -> Path:
    """``$FNNET_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/fnnet/jax`` (an absolute path; an
    empty or relative one is ignored, as the XDG spec says), else ``~/.cache/fnnet/jax``."""
    if os.environ.get("FNNET_COMPILE_CACHE"):
        return Path(os.environ["FNNET_COMPILE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "fnnet" / "jax"


def enable_compile_cache() -> Path | None:
    """Use JAX's persistent compilation cache so a second run skips compiling the steps.

    Returns the cache directory (:func:`compile_cache_dir`), or ``None`` after one line on
    stderr when it cannot be created or written (JAX would otherwise warn at every step).
    """
    import jax

    try:
        directory = compile_cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except (OSError, RuntimeError) as error:  # RuntimeError: no home directory
        print(f"fnnet: compile cache off: {error}", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


# --- records -------------------------------------------------------------------------------


def check_resume_settings(directory: Path, settings: dict[str, Any],
                          keys: tuple[str, ...]) -> None:
    """A usage error when the newest readable checkpoint in ``directory`` was written with
    other values of the settings ``keys`` (those that fix the trajectory) than ``settings``."""
    from fnnet import checkpoint

    for path in reversed(checkpoint.list_checkpoints(directory)):
        try:
            saved = checkpoint.read_settings(path)
            break
        except checkpoint.CheckpointError:
            continue  # corrupt: the restore reports it and falls back too
    else:
        return
    changed = [f"--{k.replace('_', '-')} {saved.get(k)!r} → {settings[k]!r}"
               for k in keys if saved.get(k) != settings[k]]
    if changed:
        raise UsageError(f"--resume: {path} was written with other settings ("
                         f"{'; '.join(changed)}); use them or another --checkpoint-dir")


def training_command(run: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
    """A training command's handler, ``handler(args) -> exit status``, from
    ``run(args, held, clock)``: ``held`` an :class:`contextlib.ExitStack` for what stays held
    until the command ends (the checkpoint lock, a default device), ``clock`` a
    :class:`Clock` over the programs compiled meanwhile."""

    @functools.wraps(run)
    def handler(args: argparse.Namespace) -> int:
        from fnnet.compiles import count_compilations

        with contextlib.ExitStack() as held, count_compilations() as compiles:
            return run(args, held, Clock(compiles))

    return handler


def check_run_outputs(args: argparse.Namespace, held: contextlib.ExitStack, *,
                      lock: bool = True) -> None:
    """A training command's ``--resume``, ``--plot``, ``--out`` and ``--checkpoint-dir``
    checked before any work: ``--resume`` needs ``--checkpoint-dir``, ``--plot`` needs
    matplotlib, each path must be writable; with ``lock``, the checkpoint directory is locked
    on ``held`` (until training has ended) so that two runs never share it."""
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir")
    if args.plot is not None:
        require_matplotlib()
    check_writable("--out", args.out)
    check_writable("--plot", args.plot)
    check_writable("--checkpoint-dir", args.checkpoint_dir, directory=True)
    if lock and args.checkpoint_dir is not None:
        from fnnet.checkpoint import lock_directory

        held.enter_context(lock_directory(args.checkpoint_dir))


def run_fit(command: str, fit_call: Callable[[], tuple[Any, Any]], *,
            records: list[dict[str, Any]], write_outputs: Callable[..., None],
            checkpoint_dir: Path | None, covers: str,
            clock: Clock | None = None) -> tuple[Any, Any] | int:
    """``fit_call()`` (a ``fit`` or ``fit_lm``) with the outcomes every training command
    reports alike: a non-finite loss (exit :data:`EXIT_NON_FINITE`) or an interrupt (exit
    :data:`EXIT_INTERRUPTED`) prints one line and writes the finished epochs with the status
    ``diverged`` / ``interrupted``; a resumed run with nothing left to do says its checkpoint
    already covers ``covers`` and writes ``already-complete`` (exit 0). Those return the exit
    status; a run that trained returns ``(params, history)``, its training and evaluation
    seconds added to ``clock``.

    ``write_outputs(status, summary, history, error=None)`` writes ``--out``; ``records`` are
    the epoch records reported so far (used when the error carries no ``history``: fit's
    holds the whole run's, resumed epochs included)."""
    from fnnet.train import NonFiniteLossError

    def finished(error: BaseException) -> dict[str, Any]:
        history = getattr(error, "history", None)
        if history is not None:
            return history.to_dict()
        return {name: [r[name] for r in records] for name in records[0]} if records else {}

    try:
        params, history = fit_call()
    except NonFiniteLossError as error:
        print(f"fnnet {command}: error: {error}", file=sys.stderr)
        write_outputs("diverged", None, finished(error), str(error))
        return EXIT_NON_FINITE
    except KeyboardInterrupt as error:
        saved = f"; checkpoint in {checkpoint_dir}" if checkpoint_dir else ""
        print(f"fnnet {command}: interrupted{saved}", file=sys.stderr)
        write_outputs("interrupted", None, finished(error))
        return EXIT_INTERRUPTED
    if not history.trained_epochs:
        print(f"done: the checkpoint in {checkpoint_dir} already covers all {covers}")
        write_outputs("already-complete", None, history.to_dict())
        return 0
    if clock is not None:
        clock.add("training", history.trained_s)
        clock.add("evaluation", history.eval_s)
    return params, history


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as JSON-able settings (paths as strings, handlers left out)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("handler", "process_setup")}


def data_line(files: tuple[str, ...]) -> str:
    """``data: <the files read>`` (or ``in memory``)."""
    return f"data: {', '.join(files) if files else 'in memory'}"


# --- where a command's time goes ------------------------------------------------------------

MAIN_STARTED: list[float] = []
"""``time.perf_counter()`` at the start of the command (set by :func:`fnnet.cli.main`: the
process's start when ``fnnet`` is the program, else the call)."""


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), else None."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Clock:
    """A command's wall time in parts that do not overlap: ``start-up`` (from
    :data:`MAIN_STARTED`: the interpreter, the imports, the checks, up to the first part),
    the named parts (each without the compiling done inside it), ``compile`` (every program
    JAX built, counted by :func:`fnnet.compiles.count_compilations`) and ``other`` (the
    rest). The compiling done inside each part is kept too (``compile_in_s``)."""

    def __init__(self, compiles: Any):
        self.compiles = compiles
        self.origin = MAIN_STARTED[-1] if MAIN_STARTED else time.perf_counter()
        self.parts: dict[str, float] = {}
        self.compiled_in: dict[str, float] = {}
        self.first_part: float | None = None

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` (measured elsewhere, compilation already excluded) as ``name``."""
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the block as ``name``, less the compilation inside it."""
        if self.first_part is None:
            self.first_part = time.perf_counter()
        begin, before = time.perf_counter(), self.compiles.copy()
        try:
            yield
        finally:
            compiled = (self.compiles - before).seconds
            self.compiled_in[name] = self.compiled_in.get(name, 0.0) + compiled
            self.add(name, time.perf_counter() - begin - compiled)

    def summary(self) -> dict[str, Any]:
        """``wall_s``, ``startup_s``, each part's ``<name>_s``, ``compile_s``, ``programs``,
        ``cache_hits``, ``other_s``, and ``compile_in_s``: ``{part: seconds}`` of the
        compiling inside each part (part of ``compile_s``)."""
        now = time.perf_counter()
        startup = (self.first_part if self.first_part is not None else now) - self.origin
        parts = {f"{name}_s": seconds for name, seconds in self.parts.items()}
        wall = now - self.origin
        compile_s = self.compiles.seconds
        other = wall - startup - sum(parts.values()) - compile_s
        return {"wall_s": wall, "startup_s": startup, **parts, "compile_s": compile_s,
                "programs": self.compiles.programs, "cache_hits": self.compiles.cache_hits,
                "other_s": max(0.0, other), "compile_in_s": dict(self.compiled_in)}

    def line(self) -> str:
        """``time: 2.31 s = start-up 0.62 + data 0.03 + … + other 0.20``."""
        summary = self.summary()
        cached = f", {summary['cache_hits']} from the cache" if summary["cache_hits"] else ""
        parts = [f"start-up {summary['startup_s']:.2f}",
                 *(f"{name} {seconds:.2f}" for name, seconds in self.parts.items()),
                 f"compile {summary['compile_s']:.2f} ({summary['programs']} programs{cached})",
                 f"other {summary['other_s']:.2f}"]
        return f"time: {summary['wall_s']:.2f} s = " + " + ".join(parts)

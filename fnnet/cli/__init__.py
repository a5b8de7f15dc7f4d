"""The ``fnnet`` command (also ``python -m fnnet``): one module per subcommand.

* :mod:`fnnet.cli.train` — ``fnnet train``: train one of the book's nets;
* :mod:`fnnet.cli.gradcheck` — ``fnnet gradcheck``: manual vs autodiff vs numerical, per leaf;
* :mod:`fnnet.cli.sweep` — ``fnnet sweep``: the book's hyperparameter search in one program;
* :mod:`fnnet.cli.check_layer` — ``fnnet check-layer``: a book-style NumPy layer class checked;
* :mod:`fnnet.cli.graph` — ``fnnet graph``: a computational graph with values and gradients;
* :mod:`fnnet.cli.lm` — ``fnnet lm``: the sequel's recurrent language models on PTB;
* :mod:`fnnet.cli.seq2seq` — ``fnnet seq2seq``: the sequel's encoder–decoders on addition
  and dates.

Each command module has ``add_parser(commands)``, which registers its flags and handler; the
flags and checks they share live in :mod:`fnnet.cli.flags` and :mod:`fnnet.cli.common`.
Imports go one way: this module → the commands → ``flags`` → ``common``. No module imports JAX
at import time.

Every failure is one line on stderr and an exit status:

* 0 done (also when a resumed run finds its checkpoint already covers the plan);
* 1 the data, a checkpoint or the disk failed (missing or corrupt files, a checkpoint
  directory locked by another run, a full disk: the message names the path), or a
  multi-host run could not join its coordinator in time; ``gradcheck``: out of tolerance;
  ``check-layer``: a check failed; ``graph``: the function raised;
* 2 a usage error: a bad flag value, or a model too large for the memory;
* 3 training diverged (a non-finite loss);
* 130 interrupted (Ctrl-C), at any point inside :func:`main` (a Ctrl-C while Python still
  imports the ``fnnet`` package itself, before ``main`` runs, is Python's own traceback);
  141 stdout was closed (``fnnet … | head -1``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import NoReturn

from fnnet.cli import check_layer, common, gradcheck, graph, lm, seq2seq, sweep, train
from fnnet.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    JoinError,
    Parser,
    UsageError,
)

COMMANDS = (train, gradcheck, sweep, lm, seq2seq, check_layer, graph)
"""The subcommand modules, in the order ``fnnet --help`` lists them."""

__all__ = ["COMMANDS", "build_parser", "console", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``fnnet`` parser with every subcommand of :data:`COMMANDS`."""
    parser = Parser(prog="fnnet", description=(
        "Train and check the 'Deep Learning from Scratch' networks, whose backward rules are "
        "written by hand (jax.custom_vjp) and checked against jax.grad."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fnnet`` console script; returns the exit status (see the module
    docstring). Ctrl-C at any point, JAX's import included, exits 130 with one line."""
    command = "fnnet"
    age = common.process_age() if argv is None else None  # the program: from its start
    common.MAIN_STARTED.append(time.perf_counter() - (age or 0.0))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        command = f"fnnet {args.command}"
        if argv is None and getattr(args, "process_setup", None) is not None:
            args.process_setup()  # fnnet is the program: process-wide setup is its to do
        with warnings.catch_warnings():
            _one_line_warnings(args.command)
            return _run(args, command)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def console() -> NoReturn:
    """The ``fnnet`` program (the console script, ``python -m fnnet``): :func:`main`, then
    the process ends as soon as its work is done — output flushed, other threads joined,
    ``atexit`` handlers run — without the interpreter's teardown, which frees every module
    and JAX's compiled programs one object at a time (~0.2 s: a tenth of a small run)."""
    status = main()
    # What the interpreter runs first at exit, in its order: the threads' shutdown (pools
    # told to stop, non-daemon threads joined), then the atexit handlers; then the flush.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        status = EXIT_BROKEN_PIPE
    except (OSError, ValueError):
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(status)


def _run(args: argparse.Namespace, command: str) -> int:
    from fnnet.checkpoint import CheckpointError
    from fnnet.data import DatasetError

    try:
        return args.handler(args)
    except BrokenPipeError:
        raise
    except (DatasetError, CheckpointError, OSError, JoinError) as error:  # data, disk, hosts
        print(f"{command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except (UsageError, ValueError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush does
    not fail again (the recipe of the Python docs, 'Note on SIGPIPE')."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _one_line_warnings(command: str) -> None:
    """Show skipped-checkpoint notices as ``fnnet <command>: warning: …`` (no source line)."""
    from fnnet.checkpoint import CorruptCheckpointWarning

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CorruptCheckpointWarning):
            print(f"fnnet {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning

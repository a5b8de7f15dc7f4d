"""Every ``fnnet …`` command the README shows parses with today's command line: a renamed or
removed flag, a choice no longer offered, or a misspelt command fails here, not in a reader's
shell."""

import re
import shlex
from pathlib import Path

import pytest

from fnnet.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _shell_blocks() -> list[str]:
    """The README's fenced blocks other than Python ones."""
    blocks, current, language = [], None, ""
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language != "python":
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _commands() -> list[str]:
    """The README's ``fnnet`` command lines (continuations joined, comments dropped)."""
    lines = []
    for block in _shell_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("fnnet "):  # a shell variable ($i: a host's number) as 0
                line = re.sub(r"\$\{?\w+\}?", "0", line)
                lines.append(shlex.join(shlex.split(line, comments=True)))
    return lines


COMMANDS = _commands()


def test_the_readme_shows_commands_of_every_subcommand():
    shown = {shlex.split(line)[1] for line in COMMANDS}
    assert {"train", "gradcheck", "sweep", "check-layer", "graph", "lm", "seq2seq"} <= shown


@pytest.mark.parametrize("line", COMMANDS, ids=lambda line: " ".join(line.split()[:3]))
def test_a_readme_command_parses(line, capsys):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(line)[1:])
    except SystemExit as exit:  # --help exits 0; a usage error exits 2
        assert exit.code == 0, capsys.readouterr().err

"""``python -m fnnet`` runs the ``fnnet`` command."""

from fnnet.cli import console

console()

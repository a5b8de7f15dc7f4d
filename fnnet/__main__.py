"""``python -m fnnet`` runs the ``fnnet`` command."""

from fnnet.cli import main

raise SystemExit(main())

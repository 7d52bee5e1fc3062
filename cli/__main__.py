"""``python -m cli``: the ``gapfill`` command."""

from cli.app import main

main()

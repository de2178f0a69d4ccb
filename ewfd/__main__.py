"""``python -m ewfd``: the same as the ``ewfd`` command."""

from .cli import main

main()

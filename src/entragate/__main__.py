"""``python -m entragate``: the same CLI as the ``entragate`` command."""

from entragate.cli import main

main()

"""`python -m cotspec ...` is the `cotspec` command."""

from cotspec.cli.main import main

main()

"""`python -m petportrait.cli`: the same as the `petportrait` command."""

from petportrait.cli import main

main()

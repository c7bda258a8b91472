"""`python -m forgeline.cli` runs the command line."""

from forgeline.cli.main import main

main()

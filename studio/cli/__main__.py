"""`python -m studio.cli ...` (the form `accelerate launch -m studio.cli` uses): the same command.

The command lives in `studio.cli.main`, imported here as a module, so its error classes are the
ones every command group raises and a user error stays one line with exit status 2."""
import sys

from studio.cli.main import main

sys.exit(main())

"""``python -m multimix`` runs the command line."""

import sys

from multimix.cli import main

sys.exit(main())

"""`python -m annotator ...`: the command line, in annotator/cli.py."""

import sys

from annotator.cli import main

if __name__ == "__main__":
    sys.exit(main())

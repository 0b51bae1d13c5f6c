"""Run the command line with ``python -m slimta.storage``; see :mod:`slimta.storage.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

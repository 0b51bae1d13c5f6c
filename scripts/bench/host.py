"""Entry point of a client host: ``python -m bench.host WORKERS CLIENT_COUNTS``."""

import sys

from bench.pool import main

if __name__ == "__main__":
    main(sys.argv[1:])

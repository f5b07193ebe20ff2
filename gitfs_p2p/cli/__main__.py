"""`python -m gitfs_p2p.cli`: the command line."""

import sys

from . import main

if __name__ == "__main__":  # not when a worker process (multiprocessing spawn) imports this
    sys.exit(main())

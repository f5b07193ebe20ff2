"""`python -m gitfs_p2p.cli`: the command line."""

import sys

from . import main

sys.exit(main())

"""Make tests/torrentcore importable so its tests can share ``tc_support``."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

"""Put scripts/ on the path: the stock-client drivers (stock_clients.py) and the git side of a
swarm (swarm.py) live there, shared with `make demo` and `make bench`."""

import os
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a longer interop scenario (the opentracker variants); deselect with -m 'not slow'")

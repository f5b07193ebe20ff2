"""The BitTorrent tracker: a sans-IO core (swarm table, HTTP on h11, UDP, limits) and a trio server.

| module | owns |
| --- | --- |
| core.py | `Tracker`: announce and scrape as a state machine over the swarm table |
| swarms.py | the swarm table: peers by (info-hash, address, port), expiry, constant-time picks |
| http.py | HTTP/1.1 framing (h11) and the announce/scrape query and answer forms |
| udp.py | the BEP 15 wire forms |
| limits.py | per-source budgets, connection slots, rate-limited logs |
| server.py | the trio server (its command line is gitfs_p2p/cli/tracker.py: `gitp2p tracker`) |
"""

from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401

"""What the tests, the demo and the benchmarks share: stock-client drivers, swarms, histories, waits.

Never imported by the product itself.  Real modules (no code in strings, no sys.path
edits): `python -m gitfs_p2p.testing.<module>` where a module is also a command.
"""

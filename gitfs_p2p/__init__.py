"""gitfs-p2p: share git repositories peer to peer with stock BitTorrent clients."""

__version__ = "0.1.0"

"""BitTorrent side of gitfs-p2p: bencode codec, v1 metainfo, magnet links, tracker, and the
libtorrent session adapter (session.py, our engine)."""

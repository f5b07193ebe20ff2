"""`gitp2p seed`: a repository's torrents seeded by our own engine from its mount.

catalog   what to seed: the mount's torrents/, the torrents the repository received
mounting  the mount seeded from: a `gitp2p mount` child process, or one already there
service   the engine (torrentcore.session) seeding the catalog, following moved refs
"""

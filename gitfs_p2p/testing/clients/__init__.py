"""Drivers for stock BitTorrent clients on 127.0.0.1 (interop tests, demo, bench).

One class per client, all with the same small interface:

    client = CLIENTS["aria2"](workdir)
    client.seed(torrent_file, save_path)        # hash-check what is there, then seed it
    client.download(torrent_file, dest_dir)     # fetch into a plain directory
    client.wait_checked(timeout); client.verified_fraction()
    client.wait_complete(timeout); client.downloaded_bytes(); client.uploaded_bytes()
    client.reannounce()                         # tell the tracker again (learn new peers)
    client.rechoke_now(); with client.rechoking(): ...  # transmission: unchoke/ask now, not in 10 s
    client.stop()                               # kill its process group, remove its config

A client holds one torrent at a time: calling ``seed``/``download`` again replaces the
torrent (the data stays), which is how an updated torrent is fetched into the same
directory. Every client runs in its own session (process group) with its own temporary
config dir and its own loopback ports; DHT, LSD, PEX, uTP and port mapping are off;
encryption is allowed, not required. Every wait is bounded in time and in count.

Trackers: ``EmbeddedTracker`` (``gitp2p tracker``) and ``OpenTracker`` (Debian's
opentracker, which serves only an allow-list of info-hashes: ``allow()`` rewrites the list
and reloads it with SIGHUP).

Findings about each client are in docs/clients.md.
"""

from .aria2 import Aria2
from .base import Client
from .libtorrent import Libtorrent
from .qbittorrent import QBittorrent
from .rtorrent import Rtorrent
from .transmission import Transmission

__all__ = ["CLIENTS", "Client", "Transmission", "Aria2", "Libtorrent", "Rtorrent", "QBittorrent"]

CLIENTS = {"transmission": Transmission, "aria2": Aria2, "libtorrent": Libtorrent,
           "rtorrent": Rtorrent, "qbittorrent": QBittorrent}

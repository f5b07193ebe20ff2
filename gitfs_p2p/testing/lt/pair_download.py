"""One libtorrent seed (of SEED_PATH) and one leecher (into DEST) on 127.0.0.1; the leecher
dials the seed directly (no tracker).  Prints "complete downloaded total_size piece_length".

    /usr/bin/python3 pair_download.py TORRENT SEED_PATH DEST     (scripts/bench_torrent.py)
"""
import sys
import time

import libtorrent as lt

torrent, seed_path, dest = sys.argv[1], sys.argv[2], sys.argv[3]
settings = {'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
            'enable_incoming_utp': False, 'enable_outgoing_utp': False, 'allow_multiple_connections_per_ip': True}
seeder = lt.session(dict(settings, listen_interfaces='127.0.0.1:0'))
leecher = lt.session(dict(settings, listen_interfaces='127.0.0.1:0'))
ti = lt.torrent_info(torrent)
s = seeder.add_torrent({'ti': ti, 'save_path': seed_path})
d = leecher.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': dest})
deadline = time.monotonic() + 600
while time.monotonic() < deadline and s.status().state not in (lt.torrent_status.seeding, lt.torrent_status.finished):
    time.sleep(0.1)
while time.monotonic() < deadline and d.status().state in (lt.torrent_status.checking_files,
        lt.torrent_status.checking_resume_data):
    time.sleep(0.1)
d.connect_peer(('127.0.0.1', seeder.listen_port()))
while time.monotonic() < deadline and not d.status().is_seeding:
    if d.status().num_peers == 0:
        d.connect_peer(('127.0.0.1', seeder.listen_port()))
    time.sleep(0.2)
st = d.status()
print(int(st.is_seeding), st.total_payload_download, ti.total_size(), ti.piece_length())

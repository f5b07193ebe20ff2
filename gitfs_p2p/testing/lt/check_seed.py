"""Hash-check SAVE_PATH against TORRENT with no peers; print what libtorrent found, as JSON.

    /usr/bin/python3 check_seed.py TORRENT SAVE_PATH

Prints {"state", "progress", "seeding", "have", "total", "downloaded"} once the check is
over (at most 120 s): a seed that holds every piece reports have == total, downloaded 0.
"""
import json
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
session = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                      "enable_upnp": False, "enable_natpmp": False}, 0)  # flags 0: no plugins
ti = lt.torrent_info(torrent)
handle = session.add_torrent({"ti": ti, "save_path": save_path})
CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.allocating)
deadline = time.monotonic() + 120
st = handle.status()
while time.monotonic() < deadline:
    st = handle.status()
    if st.state not in CHECKING and st.has_metadata:
        break
    time.sleep(0.1)
print(json.dumps({"state": str(st.state), "progress": st.progress, "seeding": st.is_seeding,
                  "have": st.num_pieces, "total": ti.num_pieces(),
                  "downloaded": st.total_payload_download}))

"""Time one full hash check of SAVE_PATH against TORRENT (no peers); print it as JSON.

    /usr/bin/python3 check_time.py TORRENT SAVE_PATH

Prints {"seconds", "have", "total"}: seconds from adding the torrent (no resume data, so
libtorrent checks every piece) to its torrent_checked_alert; at most 300 s.
"""
import json
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
session = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                      "enable_upnp": False, "enable_natpmp": False,
                      "alert_mask": lt.alert.category_t.status_notification
                      | lt.alert.category_t.error_notification}, 0)  # flags 0: no plugins
ti = lt.torrent_info(torrent)
t0 = time.monotonic()
handle = session.add_torrent({"ti": ti, "save_path": save_path})
seconds = None
deadline = t0 + 300
while seconds is None and time.monotonic() < deadline:
    session.wait_for_alert(1000)
    for alert in session.pop_alerts():
        if isinstance(alert, lt.torrent_checked_alert):
            seconds = time.monotonic() - t0
st = handle.status()
print(json.dumps({"seconds": seconds, "have": st.num_pieces, "total": ti.num_pieces()}))

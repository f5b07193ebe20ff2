"""One libtorrent peer that seeds or leeches TORRENT until killed, logging status lines.

    /usr/bin/python3 session.py seed|leech TORRENT SAVE_PATH PORT [own-pace]

(tests/torrentcore/test_tc_interop.py.)  A seed re-announces every 3 s unless own-pace.
"""
import sys
import time

import libtorrent as lt

mode, torrent, save_path, port = sys.argv[1:5]
own_pace = sys.argv[5:6] == ["own-pace"]
settings = {
    "listen_interfaces": "127.0.0.1:" + port,
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_incoming_utp": False, "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                  | lt.alert.category_t.tracker_notification,
}
# flags=0: no default plugins, so no ut_pex (and no ut_metadata / smart_ban).
session = lt.session(settings, 0)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = save_path
handle = session.add_torrent(params)
# transmission never dials loopback peers (127/8 is "martian" to it), so a seed must
# learn of a transmission leecher from the tracker and dial it. libtorrent re-announces
# only every few minutes whatever the tracker's interval, so re-announce every 3 s
# (unless told to keep its own pace).
last_announce = time.monotonic()
while True:
    if mode == "seed" and not own_pace and time.monotonic() - last_announce > 3:
        handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        last_announce = time.monotonic()
    for alert in session.pop_alerts():
        print("alert:", alert.message(), flush=True)
    st = handle.status()
    print("status:", st.state, round(st.progress, 3), "peers", st.num_peers,
          "seeding", st.is_seeding, flush=True)
    time.sleep(0.5)

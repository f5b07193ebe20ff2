"""A libtorrent session driven by JSON lines on stdin; status as JSON in a file.

Run by gitfs_p2p.testing.clients.Libtorrent: /usr/bin/python3 agent.py HOST PORT STATUS_FILE
"""
import json, os, sys, threading, time
import libtorrent as lt

host, port, status_file = sys.argv[1], sys.argv[2], sys.argv[3]
session = lt.session({
    "listen_interfaces": host + ":" + port,
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_incoming_utp": False, "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "out_enc_policy": lt.enc_policy.enabled, "in_enc_policy": lt.enc_policy.enabled,
    "allowed_enc_level": lt.enc_level.both, "prefer_rc4": False,
    "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                  | lt.alert.category_t.tracker_notification | lt.alert.category_t.storage_notification,
}, 0)  # flags 0: no default plugins, so no ut_pex
commands, lock = [], threading.Lock()

def read_commands():
    for line in sys.stdin:
        with lock:
            commands.append(json.loads(line))
    with lock:
        commands.append({"cmd": "quit"})

threading.Thread(target=read_commands, daemon=True).start()
handle, mode, errors, last_announce = None, None, [], 0.0
CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.allocating)
while True:
    with lock:
        todo, commands[:] = commands[:], []
    for c in todo:
        if c["cmd"] == "quit":
            sys.exit(0)
        if c["cmd"] == "add":
            if handle is not None:
                session.remove_torrent(handle)
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(c["torrent"])
            params.save_path = c["save_path"]
            handle, mode, errors = session.add_torrent(params), c["mode"], []
        elif c["cmd"] == "reannounce" and handle is not None:
            handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
    for alert in session.pop_alerts():
        print("alert:", alert.message(), flush=True)
        if alert.category() & lt.alert.category_t.error_notification:
            errors.append(alert.message())
    if handle is not None:
        # libtorrent re-announces only every few minutes whatever the tracker's interval;
        # a seed announces every 3 s so it learns of (and dials) leechers that cannot dial.
        if mode == "seed" and time.monotonic() - last_announce > 3:
            handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
            last_announce = time.monotonic()
        st = handle.status()
        ti = handle.torrent_file()
        info = {"state": str(st.state), "checked": st.state not in CHECKING,
                "progress": st.progress, "verified": st.total_wanted_done,
                "total": st.total_wanted, "downloaded": st.total_payload_download,
                "uploaded": st.total_payload_upload, "peers": st.num_peers,
                "pieces": st.num_pieces, "num_pieces": ti.num_pieces() if ti else 0,
                "error": st.errc.message() if st.errc.value() else "",
                "errors": errors[-5:], "info_hash": str(st.info_hashes.v1)}
        with open(status_file + ".tmp", "w") as fh:
            json.dump(info, fh)
        os.replace(status_file + ".tmp", status_file)
    time.sleep(0.2)

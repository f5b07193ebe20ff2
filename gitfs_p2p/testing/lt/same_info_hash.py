"""Does libtorrent build the same v1 info dict as torrentcore?  (tests/torrentcore/test_tc_golden.py)

    /usr/bin/python3 same_info_hash.py TORRENT ROOT NAME LAYOUT_JSON PIECE_LENGTH

Prints JSON: the info-hash of TORRENT as loaded, the one libtorrent creates for the same
files (LAYOUT_JSON: [[path parts], size] in order) and piece length, and the file paths.
"""
import json
import sys

import libtorrent as lt

torrent, root, name, layout, piece_length = sys.argv[1:6]
layout = json.loads(layout)
ti = lt.torrent_info(torrent)
# libtorrent builds a v1-only torrent for the same files in the same order: its info
# dict (no pad files for v1_only in 2.0.x) must hash the same as ours.
fs = lt.file_storage()
for path, size in layout:
    fs.add_file("/".join([name] + path) if len(layout) > 1 else name, size)
ct = lt.create_torrent(fs, int(piece_length), flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, root)
mine = lt.torrent_info(ct.generate())
print(json.dumps({"loaded": str(ti.info_hash()), "created": str(mine.info_hash()),
                  "files": [ti.files().file_path(i) for i in range(ti.num_files())]}))

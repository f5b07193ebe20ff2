"""Golden tests: stock tools agree with our info-hash and piece hashes."""

import json
import re
import subprocess

import pytest
from tc_support import random_bytes, require_binary, require_libtorrent, run_libtorrent

from torrentcore.metainfo import build_info, build_torrent, info_hash

LAYOUTS = {
    "single": [(["data.bin"], 100_003)],
    "multi": [(["a.txt"], 5_000), (["empty"], 0), (["sub", "b.bin"], 70_000),
              (["sub", "deeper", "c"], 40_961)],
}


@pytest.fixture(params=sorted(LAYOUTS))
def golden(request, tmp_path):
    """Files on disk plus our torrent for them: (torrent_path, our_hash_hex, layout, root)."""
    layout = LAYOUTS[request.param]
    name = "data.bin" if request.param == "single" else "golden"
    contents = [random_bytes(size, seed) for seed, (_, size) in enumerate(layout)]
    root = tmp_path / "content"
    for (path, _), data in zip(layout, contents):
        target = root / name / "/".join(path) if len(layout) > 1 else root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    info = build_info(layout, [b"".join(contents)], name)
    torrent = tmp_path / f"{name}.torrent"
    torrent.write_bytes(build_torrent(info, ["http://127.0.0.1:1/announce"]))
    return torrent, info_hash(info).hex(), layout, root, name


def _tool_output(args):
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_transmission_show_agrees(golden):
    require_binary("transmission-show")
    torrent, ours, layout, _, _ = golden
    out = _tool_output(["transmission-show", str(torrent)])
    assert re.search(r"^\s*Hash: ([0-9a-f]{40})$", out, re.M).group(1) == ours
    assert "Tier #1" in out and "http://127.0.0.1:1/announce" in out


def test_aria2c_show_files_agrees(golden):
    require_binary("aria2c")
    torrent, ours, layout, _, _ = golden
    out = _tool_output(["aria2c", "--show-files", str(torrent)])
    assert re.search(r"^Info Hash: ([0-9a-f]{40})$", out, re.M).group(1) == ours
    assert ("Mode: multi" in out) == (len(layout) > 1)




def test_libtorrent_agrees(golden):
    require_libtorrent()
    torrent, ours, layout, root, name = golden
    piece_length = 16 * 1024
    out = json.loads(run_libtorrent("same_info_hash", str(torrent), str(root), name,
                                    json.dumps(layout), str(piece_length)))
    assert out["loaded"] == ours
    assert out["created"] == ours
    if len(layout) > 1:
        assert out["files"] == ["/".join([name] + p) for p, _ in layout]

"""Tests of torrentcore.metainfo: piece policy, building, strict parsing."""

import hashlib

import pytest
from tc_support import random_bytes

from torrentcore import bencode
from torrentcore.metainfo import (
    FileEntry,
    MetainfoError,
    build_info,
    build_torrent,
    info_hash,
    parse_torrent,
    piece_length_for,
)

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024


@pytest.mark.parametrize("total,expected", [
    (0, 16 * KiB),
    (1, 16 * KiB),
    (2000 * 16 * KiB, 16 * KiB),
    (2000 * 16 * KiB + 1, 32 * KiB),
    (100 * MiB, 64 * KiB),
    (1 * GiB, 1 * MiB),
    (4 * GiB, 4 * MiB),
    (1000 * GiB, 16 * MiB),
])
def test_piece_length_for(total, expected):
    assert piece_length_for(total) == expected


@pytest.mark.parametrize("total", [40 * MiB, 123_456_789, 3 * GiB + 5, 31 * GiB])
def test_piece_length_for_aims_at_1000_to_2000_pieces(total):
    length = piece_length_for(total)
    assert length & (length - 1) == 0
    assert 1000 <= -(-total // length) <= 2000


def _hashes(data, piece_length):
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest()
                    for i in range(0, len(data), piece_length))


def test_build_single_file():
    data = random_bytes(50_000, 1)
    info = build_info([(["ignored.bin"], len(data))], [data[:7], data[7:]], "f.bin")
    assert info == {
        b"name": b"f.bin",
        b"piece length": 16 * KiB,
        b"length": 50_000,
        b"pieces": _hashes(data, 16 * KiB),
    }


def test_build_multi_file_pieces_span_files():
    a, b, c = random_bytes(10_000, 2), b"", random_bytes(30_000, 3)
    files = [(["a"], len(a)), (["d", "empty"], 0), (["d", "c"], len(c))]
    contents = [a, b, c]

    def read(index, offset, length):
        return contents[index][offset:offset + length]

    info = build_info(files, read, "top")
    assert info[b"files"] == [
        {b"length": 10_000, b"path": [b"a"]},
        {b"length": 0, b"path": [b"d", b"empty"]},
        {b"length": 30_000, b"path": [b"d", b"c"]},
    ]
    assert info[b"pieces"] == _hashes(a + c, 16 * KiB)
    assert b"length" not in info
    # The same bytes as one chunk stream give the same info.
    assert build_info(files, [a + c], "top") == info


def test_build_single_file_as_multi_on_request():
    info = build_info([(["x"], 3)], [b"abc"], "dir", multi_file=True)
    assert info[b"files"] == [{b"length": 3, b"path": [b"x"]}]


def test_build_private_and_explicit_piece_length():
    info = build_info([(["x"], 3)], [b"abc"], "x", 32 * KiB, private=True)
    assert info[b"private"] == 1 and info[b"piece length"] == 32 * KiB


@pytest.mark.parametrize("files,chunks,name,piece_length,message", [
    ([], [], "n", None, "at least one file"),
    ([(["a"], 0)], [], "n", None, "at least one byte"),
    ([(["a"], 3)], [b"ab"], "n", None, "has 2 bytes"),
    ([(["a"], 3)], [b"abcd"], "n", None, "longer"),
    ([(["a"], 3)], [b"abc"], "n", 3000, "power of two"),
    ([(["a"], 3)], [b"abc"], "n", 8192, "power of two >= 16 KiB"),
    ([(["..", "a"], 3)], [b"abc"], "n", None, "unsafe"),
    ([(["a/b"], 3)], [b"abc"], "n", None, "separator"),
    ([([""], 3)], [b"abc"], "n", None, "unsafe"),
    ([([], 3)], [b"abc"], "n", None, "at least one component"),
    ([(["a"], -1)], [b""], "n", None, "bad size"),
    ([(["a"], 1), (["a"], 1)], [b"ab"], "n", None, "twice"),
    ([(["a"], 1), (["a", "b"], 1)], [b"ab"], "n", None, "file and a directory"),
    ([(["a"], 3)], [b"abc"], "..", None, "unsafe torrent name"),
])
def test_build_errors(files, chunks, name, piece_length, message):
    with pytest.raises(MetainfoError, match=message):
        build_info(files, chunks, name, piece_length)


def test_build_short_read():
    with pytest.raises(MetainfoError, match="short read"):
        build_info([(["a"], 10)], lambda i, off, n: b"x" * (n - 1), "n")


def test_build_torrent_is_reproducible_and_parses():
    data = random_bytes(70_000, 4)
    info = build_info([(["a"], 40_000), (["b", "c"], 30_000)], [data], "repo")
    raw = build_torrent(info, ["http://t1/announce", ["http://t2/a", "udp://t3:1/a"]],
                        web_seeds=["http://ws/"], extra={"x-gitp2p-refs": {"main": b"1" * 20}})
    assert raw == build_torrent(info, ["http://t1/announce", ["http://t2/a", "udp://t3:1/a"]],
                                web_seeds=["http://ws/"],
                                extra={"x-gitp2p-refs": {"main": b"1" * 20}})
    top = bencode.decode(raw)
    assert top[b"announce"] == b"http://t1/announce"
    assert top[b"announce-list"] == [[b"http://t1/announce"], [b"http://t2/a", b"udp://t3:1/a"]]
    assert top[b"url-list"] == [b"http://ws/"]
    assert b"creation date" not in top

    t = parse_torrent(raw)
    assert t.info_hash == info_hash(info) == hashlib.sha1(bencode.encode(top[b"info"])).digest()
    assert t.name == "repo" and t.multi_file and not t.private
    assert t.files == (FileEntry(("a",), 40_000, 0), FileEntry(("b", "c"), 30_000, 40_000))
    assert t.total_length == 70_000
    assert t.piece_length == 16 * KiB and len(t.pieces) == 5
    assert t.piece_size(4) == 70_000 - 4 * 16 * KiB
    assert t.announce_tiers == (("http://t1/announce",), ("http://t2/a", "udp://t3:1/a"))
    assert t.trackers == ("http://t1/announce", "http://t2/a", "udp://t3:1/a")
    assert t.web_seeds == ("http://ws/",)
    assert t.extra == {b"x-gitp2p-refs": {b"main": b"1" * 20}}
    assert t.info == info


def test_build_torrent_optional_fields_and_clashes():
    info = build_info([(["a"], 1)], [b"x"], "a")
    top = bencode.decode(build_torrent(info, creation_date=1700000000, created_by="me",
                                       comment="c"))
    assert top[b"creation date"] == 1700000000 and top[b"created by"] == b"me"
    assert b"announce" not in top
    with pytest.raises(MetainfoError, match="clashes"):
        build_torrent(info, extra={"announce": b"x"})
    with pytest.raises(MetainfoError, match="bad announce"):
        build_torrent(info, [[]])


def test_parse_single_file_and_url_list_string():
    info = build_info([(["x"], 3)], [b"abc"], "x.bin")
    raw = bencode.encode({b"info": info, b"announce": b"http://t/a", b"url-list": b"http://w/"})
    t = parse_torrent(raw)
    assert t.files == (FileEntry(("x.bin",), 3, 0),)
    assert not t.multi_file
    assert t.announce_tiers == (("http://t/a",),)
    assert t.web_seeds == ("http://w/",)


def _torrent_with(info_changes=None, top_changes=None, files=None):
    info = build_info([(["a"], 20_000), (["b"], 20_000)], [b"\x01" * 40_000], "n")
    if files is not None:
        info[b"files"] = files
    for k, v in (info_changes or {}).items():
        if v is None:
            info.pop(k, None)
        else:
            info[k] = v
    top = {b"info": info}
    top.update(top_changes or {})
    return bencode.encode(top)


@pytest.mark.parametrize("raw,message", [
    (b"i1e", "top level is not a dict"),
    (b"d4:infoi1ee", "must be dict"),
    (b"d4:infod4:name1:nee", "no 'piece length'"),
    (b"d4:infod1:b0:1:a0:ee", "not a torrent: unsorted"),
    (_torrent_with({b"piece length": 20_000}), "not a power of two"),
    (_torrent_with({b"piece length": 8192}), "not a power of two"),
    (_torrent_with({b"pieces": b"x" * 41}), "not a multiple of 20"),
    (_torrent_with({b"pieces": b"x" * 40}), "expected 3"),
    (_torrent_with({b"length": 5}), "exactly one of"),
    (_torrent_with({b"files": None}), "exactly one of"),
    (_torrent_with({b"name": b".."}), "unsafe name"),
    (_torrent_with({b"name": b"a/b"}), "separator"),
    (_torrent_with({b"name": b"\xff"}), "UTF-8"),
    (_torrent_with({b"name": 5}), "must be bytes"),
    (_torrent_with({b"private": 2}), "private"),
    (_torrent_with({b"meta version": 2}), "v2"),
    (_torrent_with(files=[]), "empty"),
    (_torrent_with(files=[b"x"]), "not a dict"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [b".."]}]), "unsafe"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [b""]}]), "unsafe"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [b"", b"etc"]}]), "unsafe"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [b"a/b"]}]), "separator"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [b"a\\b"]}]), "separator"),
    (_torrent_with(files=[{b"length": 40_000, b"path": []}]), "0 components"),
    (_torrent_with(files=[{b"length": 40_000, b"path": [1]}]), "not a string"),
    (_torrent_with(files=[{b"length": -1, b"path": [b"a"]}]), "negative"),
    (_torrent_with(files=[{b"length": 20_000, b"path": [b"a"]},
                          {b"length": 20_000, b"path": [b"a"]}]), "twice"),
    (_torrent_with(files=[{b"attr": b"p", b"length": 40_000, b"path": [b".pad", b"0"]}]),
     "pad file"),
    (_torrent_with(top_changes={b"announce-list": [b"x"]}), "announce-list"),
    (_torrent_with(top_changes={b"url-list": 3}), "url-list"),
])
def test_parse_rejects(raw, message):
    with pytest.raises(MetainfoError, match=message):
        parse_torrent(raw)


def test_parse_rejects_zero_length():
    raw = bencode.encode({b"info": {b"length": 0, b"name": b"n", b"piece length": 16384,
                                    b"pieces": b""}})
    with pytest.raises(MetainfoError, match="no data"):
        parse_torrent(raw)


def test_parse_rejects_non_canonical_and_oversized():
    with pytest.raises(MetainfoError, match="not a torrent"):
        parse_torrent(_torrent_with() + b"x")
    with pytest.raises(MetainfoError, match="exceeds the limit"):
        parse_torrent(_torrent_with(), max_size=50)

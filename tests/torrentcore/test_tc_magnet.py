"""Tests of torrentcore.magnet."""

import base64

import pytest

from torrentcore.magnet import Magnet, MagnetError, magnet_link, parse_magnet

IH = bytes(range(20))


def test_round_trip():
    uri = magnet_link(IH, "my repo & co", ["http://127.0.0.1:6969/announce", "udp://t:1"],
                      ["http://ws/x?y=1"])
    assert uri.startswith("magnet:?xt=urn:btih:" + IH.hex() + "&dn=my%20repo%20%26%20co&tr=")
    assert parse_magnet(uri) == Magnet(IH, "my repo & co",
                                       ("http://127.0.0.1:6969/announce", "udp://t:1"),
                                       ("http://ws/x?y=1",))


def test_minimal_and_hex_string_hash():
    assert magnet_link(IH.hex()) == "magnet:?xt=urn:btih:" + IH.hex()
    assert parse_magnet(magnet_link(IH)) == Magnet(IH)


def test_base32_upper_hex_plus_and_numbered_params():
    b32 = base64.b32encode(IH).decode()
    m = parse_magnet(f"magnet:?xt=urn:btih:{b32.lower()}&dn=a+b&tr.1=http%3A%2F%2Ft")
    assert m == Magnet(IH, "a b", ("http://t",))
    assert parse_magnet("MAGNET:?xt=urn:btih:" + IH.hex().upper()).info_hash == IH


def test_v2_hash_is_ignored_beside_v1():
    uri = f"magnet:?xt=urn:btmh:1220{'ab' * 32}&xt=urn:btih:{IH.hex()}"
    assert parse_magnet(uri).info_hash == IH


@pytest.mark.parametrize("uri,message", [
    ("http://x", "must start with"),
    ("magnet:?dn=x", "no 'xt=urn:btih:'"),
    ("magnet:?xt=urn:sha1:abc", "unsupported exact topic"),
    ("magnet:?xt=urn:btih:1234", "must be 40 hex or 32 base32"),
    ("magnet:?xt=urn:btih:" + "g" * 40, "not 40 hex"),
    ("magnet:?xt=urn:btih:" + "1" * 32, "not 32 base32"),
    ("magnet:?xt=urn:btih:" + "a" * 40 + "&xt=urn:btih:" + "b" * 40, "more than one"),
    ("magnet:?xt", "no '='"),
    ("magnet:?xt=urn:btih:" + "a" * 40 + "&dn=%ff", "UTF-8"),
    ("magnet:?" + "x" * 70_000, "longer than"),
])
def test_parse_errors(uri, message):
    with pytest.raises(MagnetError, match=message):
        parse_magnet(uri)


def test_build_errors():
    with pytest.raises(MagnetError, match="20 bytes"):
        magnet_link(b"short")
    with pytest.raises(MagnetError, match="not hex"):
        magnet_link("zz" * 20)

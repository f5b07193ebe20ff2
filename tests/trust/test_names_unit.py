"""gitp2p://KEY/NAME without a network (gitfs_p2p/trust/names.py): addresses, the publisher's
key file, and the receiver's checks of a DHT item, fed the item's bytes.

libtorrent's nodes refuse to store an item whose signature is bad (tests/torrentcore/
test_tc_dht_items.py shows it), so a forged item cannot be planted in a real DHT by the
Python bindings; our own check of what a lookup returned is tested here, with forged bytes."""

import os
import stat

import pytest

from gitfs_p2p.errors import FetchError, PublishError
from gitfs_p2p.remote.address import parse_address
from gitfs_p2p.trust.names import AcceptedNames, Name, NameRefused, check_item, key_path, parse_name, publisher_key
from testutil import git
from torrentcore.mutable import MutableItem, SigningKey, value_for

KEY = SigningKey(bytes(range(32)))
IH1, IH2 = bytes(range(20)), bytes(range(1, 21))


def item(key: SigningKey, name: str, seq: int, ih: bytes, *, signer: SigningKey | None = None) -> MutableItem:
    value = b"%d:" % len(value_for(ih)) + value_for(ih)  # as libtorrent's Python put stores it
    return MutableItem(key.public, name.encode(), seq, value, (signer or key).sign(name.encode(), seq, value))


@pytest.fixture
def repo(tmp_path):
    git("init", "-q", "--bare", str(tmp_path / "r.git"))
    return str(tmp_path / "r.git")


def test_addresses():
    name = parse_name(f"gitp2p://{KEY.public.hex()}/project.git")
    assert (name.public_key, name.name, name.salt) == (KEY.public, "project.git", b"project.git")
    assert name.address == f"gitp2p://{KEY.public.hex()}/project.git"
    assert parse_address(name.address).kind == "name" and parse_address(name.address).name == name
    for bad in (f"gitp2p://{KEY.public.hex()}", f"gitp2p://{KEY.public.hex()}/", f"gitp2p://{KEY.public.hex()}/a/b",
                f"gitp2p://{KEY.public.hex()}/-x", f"gitp2p://{KEY.public.hex()}/" + "a" * 65, "gitp2p://abcd/x"):
        with pytest.raises(FetchError):
            parse_address(bad)


def test_the_key_is_made_once_private_and_kept(repo):
    with pytest.raises(PublishError, match="no publishing key"):
        publisher_key(repo)
    key = publisher_key(repo, create=True)
    path = key_path(repo)
    assert path == os.path.join(repo, "gitp2p", "dht-key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert publisher_key(repo, create=True) == key == publisher_key(repo)
    with open(path) as fh:
        assert key.public.hex() in fh.read()  # the public half beside it, for people


def test_gitp2p_dhtkey_names_another_file(repo, tmp_path):
    other = tmp_path / "keys" / "mine"
    git("config", "gitp2p.dhtKey", str(other), cwd=repo)
    key = publisher_key(repo, create=True)
    assert other.exists() and not os.path.exists(os.path.join(repo, "gitp2p", "dht-key"))
    other.write_text("not a key\n")
    with pytest.raises(PublishError, match="not a gitp2p publishing key"):
        publisher_key(repo)
    assert key.public != SigningKey(bytes(32)).public


def test_a_good_item_then_newer_ones(repo):
    name = Name(KEY.public, "p")
    names = AcceptedNames(repo)
    assert check_item(name, item(KEY, "p", 3, IH1), names) == (3, IH1.hex())
    names.record(name, 3, IH1.hex())
    assert check_item(name, item(KEY, "p", 3, IH1), names) == (3, IH1.hex())  # the same again
    assert check_item(name, item(KEY, "p", 4, IH2), AcceptedNames(repo)) == (4, IH2.hex())


def test_attacks_are_refused_in_one_line(repo):
    name = Name(KEY.public, "p")
    names = AcceptedNames(repo)
    names.record(name, 5, IH1.hex())
    mallory = SigningKey(bytes(range(2, 34)))
    cases = {
        "older": (item(KEY, "p", 4, IH2), "replay: the DHT's item has sequence number 4, older than 5"),
        "same number, other torrent": (item(KEY, "p", 5, IH2), "sequence number 5 was accepted before"),
        "forged signature": (item(KEY, "p", 6, IH2, signer=mallory), "bad signature"),
        "another name's item": (item(KEY, "q", 6, IH2), "another key or name"),
        "another key's item": (item(mallory, "p", 6, IH2), "another key or name"),
        "nothing": (None, "the DHT holds no item for this name"),
    }
    for what, (it, why) in cases.items():
        with pytest.raises(NameRefused, match=why) as info:
            check_item(name, it, AcceptedNames(repo))
        assert "\n" not in str(info.value), what
    bad_value = MutableItem(KEY.public, b"p", 6, b"i5e", KEY.sign(b"p", 6, b"i5e"))
    with pytest.raises(NameRefused, match="names no v1 info-hash"):
        check_item(name, bad_value, names)


def test_a_push_moves_the_publishers_own_refs_as_git_push_would(tmp_path):
    from gitfs_p2p.remote.push import _update, parse_push

    repo = tmp_path / "pub"
    git("init", "-q", "-b", "main", str(repo))
    for n in range(3):
        git("commit", "-q", "--allow-empty", "-m", f"c{n}", cwd=repo)
    git_dir = str(repo / ".git")
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    old = git("rev-parse", "HEAD~2", cwd=repo).strip()
    git("branch", "release", old, cwd=repo)
    git("branch", "ahead", head, cwd=repo)
    git("tag", "v1", old, cwd=repo)

    def push(spec: str):
        return _update(git_dir, parse_push(spec))

    def rev(ref: str) -> str:
        return git("rev-parse", ref, cwd=repo).strip()

    assert push("refs/heads/main:refs/heads/main") is None  # publishing a branch as itself
    assert push("refs/heads/main:refs/heads/release") is None and rev("release") == head  # fast-forward
    assert push("refs/tags/v1:refs/heads/ahead") == "non-fast-forward" and rev("ahead") == head
    assert push("+refs/tags/v1:refs/heads/ahead") is None and rev("ahead") == old
    assert push("refs/heads/main:refs/tags/v1") == "already exists"
    git("branch", "-f", "release", old, cwd=repo)
    assert "checked-out branch" in push("+refs/heads/release:refs/heads/main") and rev("main") == head
    assert "deleting" in push(":refs/heads/ahead") and rev("ahead") == old
    assert "no such revision" in push("refs/heads/nope:refs/heads/x")


def _publish(*args: str):
    from testutil import gitp2p

    proc = gitp2p("publish", *args, "--no-seed", timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _setting(repo, key: str) -> str:
    return git("config", "--get-all", key, cwd=repo, check=False).strip()


def test_publish_chosen_refs_or_a_name_as_before(tmp_path):
    """`gitp2p publish REPO [REF...] [--name NAME]`: REFs set gitp2p.publishRefs (full names), no REF
    unsets it; one argument that is no branch or tag is the NAME of before; one that is both is
    refused, saying how to say either."""
    from tsupport import Publisher

    pub = Publisher(tmp_path / "proj", None)
    git("tag", "-a", "-m", "one", "v1.0", cwd=pub.path)
    git("branch", "wip", cwd=pub.path)

    code, out, err = _publish(str(pub.path), "main", "v1.0")
    assert code == 0, err
    assert "(main, v1.0) as gitp2p://" in out and out.split("as gitp2p://")[1].split()[0].endswith("/proj")
    assert _setting(pub.path, "gitp2p.publishRefs") == "refs/heads/main refs/tags/v1.0"
    assert _setting(pub.path, "gitp2p.publishName") == "proj"

    code, out, err = _publish(str(pub.path), "--name", "other", "refs/heads/wip")
    assert code == 0, err
    assert _setting(pub.path, "gitp2p.publishRefs") == "refs/heads/wip"
    assert _setting(pub.path, "gitp2p.publishName") == "other" and "(wip) as gitp2p://" in out

    code, out, err = _publish(str(pub.path), "renamed")  # the form of before: NAME, every ref
    assert code == 0, err
    assert _setting(pub.path, "gitp2p.publishRefs") == ""
    assert _setting(pub.path, "gitp2p.publishName") == "renamed" and "(every branch and tag) as" in out

    code, out, err = _publish(str(pub.path), "wip")
    assert code == 2 and "'wip' is a branch or tag of" in err and "--name NAME wip" in err and "--name wip" in err
    assert _setting(pub.path, "gitp2p.publishName") == "renamed"  # nothing changed

    code, out, err = _publish(str(pub.path), "main", "nope")
    assert code == 2 and "nope: not a branch or tag of" in err, err
    code, out, err = _publish(str(pub.path), "--name", "x", "nope")
    assert code == 2 and "nope: not a branch or tag of" in err, err
    assert _setting(pub.path, "gitp2p.publishRefs") == ""

"""`gitp2p watch --once` says when it did not finish: exit 3, and what is missing and why.

A real history with one commit's pack replaced by a refused one (complete, checksummed,
wrong): every later pack waits for it and the refs wait for them.  The summary names
the quarantined pack with its reason and how many packs wait for it, and a later run
still names it as quarantined (the file is gone from DIR by then), never as missing.
"""

from __future__ import annotations

import subprocess
import sys

from wsupport import deliver, write_manifest

from gitfs_p2p.pack.packfile import OBJ_COMMIT, read_pack, write_pack, PackEntry
from testutil import git

BROKEN = 12  # index of the commit whose pack arrives broken


def _watch_once(d, repo) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare", "--once"],
        capture_output=True, text=True, timeout=300,
    )


def _mislabelled(pack: bytes) -> bytes:
    """The same pack with one byte of the commit's message changed: valid, but not the named commit."""
    entries = []
    for e in read_pack(pack):
        data = e.data.replace(b"\n\n", b"\n\nX", 1) if e.type_num == OBJ_COMMIT else e.data
        entries.append(PackEntry(e.type_num, data, e.base_id))
    return write_pack(entries)


def test_quarantined_pack_is_named_with_what_waits_for_it(tmp_path, sender):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    broken = sender.commits[BROKEN]
    deliver(str(d), sender, [c for c in sender.commits if c != broken])
    (d / "packs" / f"{broken}.pack").write_bytes(_mislabelled(sender.packs[broken]))
    write_manifest(str(d), sender.manifest())
    waiting = [c for c in sender.commits if c != broken and subprocess.run(
        ["git", "merge-base", "--is-ancestor", broken, c], cwd=sender.path).returncode == 0]
    assert len(waiting) > 10

    first = _watch_once(d, repo)
    assert first.returncode == 3, first.stderr
    reason = "which the pack does not hold"
    assert f"quarantined packs/{broken}.pack: " in first.stderr and reason in first.stderr
    line = next(x for x in first.stderr.splitlines() if f"{broken}.pack was quarantined" in x)
    assert reason in line and f"{len(waiting):,} packs wait for it" in line
    assert "ref refs/heads/main waits for" in first.stderr
    assert first.stderr.splitlines()[-1].startswith("gitp2p: not finished")

    # the file is in quarantine now; a later run names it as such, with its reason
    assert not (d / "packs" / f"{broken}.pack").exists()
    second = _watch_once(d, repo)
    assert second.returncode == 3, second.stderr
    line = next(x for x in second.stderr.splitlines() if f"{broken}.pack was quarantined" in x)
    assert reason in line and f"{len(waiting):,} packs wait for it" in line
    assert "no file in DIR yet" not in second.stderr

    # the right pack arrives: everything is imported, every ref set, exit 0
    deliver(str(d), sender, [broken])
    third = _watch_once(d, repo)
    assert third.returncode == 0, third.stderr
    assert git("rev-parse", "refs/heads/main", cwd=repo).strip() == sender.refs["refs/heads/main"]

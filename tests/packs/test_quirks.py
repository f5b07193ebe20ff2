"""The sending side on a history git clones but fsck frowns on (testutil.make_quirky_history).

Each commit is read the way git reads it: its date is git's (`git rev-list --timestamp`),
its pack holds what `git rev-list --objects` says, and `git index-pack --fix-thin`
takes every pack, parents first, into an empty repository with the same ids.
"""

from __future__ import annotations

import subprocess

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.objects import parse_commit
from gitfs_p2p.store.source import PackSource
from testutil import QUIRKS, git, gitp2p


def test_commit_dates_are_gits(quirky):
    path, _ = quirky
    repo = GitRepo(path)
    try:
        for line in git("rev-list", "--timestamp", "--all", cwd=path).splitlines():
            stamp, commit = line.split()
            _, raw = repo.read_raw(commit.encode())
            assert parse_commit(raw).date == int(stamp), commit
    finally:
        repo.close()


def test_every_quirk_is_in_the_history(quirky):
    path, ids = quirky
    fsck = subprocess.run(["git", "-C", path, "fsck", "--strict"], capture_output=True, text=True)
    for quirk in ("badTimezone", "missingEmail", "missingSpaceBeforeDate", "badEmail", "zeroPaddedDate",
                  "multipleAuthors", "nulInCommit"):
        assert quirk in fsck.stderr + fsck.stdout, quirk
    for quirk in QUIRKS:
        assert quirk in ids


def test_packs_of_a_quirky_history_import_into_git(quirky, tmp_path):
    path, _ = quirky
    listing = gitp2p("packs", path)
    assert listing.returncode == 0, listing.stderr.decode()
    commits = [line.split()[0] for line in listing.stdout.decode().splitlines()]
    assert set(commits) == set(git("rev-list", "--all", cwd=path).split())
    dest = str(tmp_path / "dest")
    git("init", "-q", "--bare", dest)
    repo = GitRepo(path)
    source = PackSource(repo)
    try:
        for commit in commits:
            data = source.pack(commit.encode())
            parents = git("rev-parse", f"{commit}^@", cwd=path).split()
            want = git("rev-list", "--objects", commit, "--not", *parents, cwd=path).split("\n")
            want = {line.split()[0] for line in want if line}
            proc = subprocess.run(["git", "-C", dest, "index-pack", "--stdin", "--fix-thin"], input=data,
                                  capture_output=True)
            assert proc.returncode == 0, (commit, proc.stderr.decode())
            got = subprocess.run(["git", "-C", dest, "rev-list", "--objects", commit, "--not", *parents],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
            assert {line.split()[0] for line in got if line} == want, commit
    finally:
        source.close()
        repo.close()

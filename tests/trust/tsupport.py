"""Helpers for the signed-manifest tests: keys, allowed-signers files, a publisher repository,
and the files a client leaves after downloading a torrent made by `gitp2p torrent`.

Imported as ``tsupport`` (a unique name beside the other test folders' helpers)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from testutil import git, gitp2p
from torrentcore.metainfo import parse_torrent

__all__ = ["make_key", "allowed_signers", "Publisher", "download", "refs_of", "watch_once", "receiver"]


def make_key(directory: Path, name: str) -> Path:
    """A fresh ed25519 key without passphrase (ssh-keygen); its private key's path."""
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


def allowed_signers(path: Path, *entries: tuple[str, Path]) -> Path:
    """An allowed-signers file (git's format) naming principal -> key (its private key's path)."""
    lines = []
    for principal, key in entries:
        kind, blob = Path(str(key) + ".pub").read_text().split()[:2]
        lines.append(f"{principal} {kind} {blob}\n")
    path.write_text("".join(lines))
    return path


def refs_of(repo) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)
    return {name: oid for oid, name in (line.split() for line in out.splitlines())}


class Publisher:
    """A small repository with branch main, signing its manifests with key."""

    def __init__(self, path: Path, key: Path | str | None):
        self.path = path
        git("init", "-q", "-b", "main", str(path))
        for n in range(4):
            self.commit(f"c{n}")
        if key is not None:
            self.use_key(key)

    def use_key(self, key: Path | None) -> None:
        if key is None:
            git("config", "gitp2p.signManifests", "false", cwd=self.path)
            return
        if isinstance(key, str):  # an OpenPGP key (fingerprint), in the GNUPGHOME of the environment
            git("config", "gitp2p.signManifests", "true", cwd=self.path)
            git("config", "gpg.format", "openpgp", cwd=self.path)
            git("config", "user.signingkey", key, cwd=self.path)
            return
        git("config", "gitp2p.signManifests", "true", cwd=self.path)
        git("config", "gpg.format", "ssh", cwd=self.path)
        git("config", "user.signingkey", str(key) + ".pub", cwd=self.path)

    def commit(self, text: str) -> str:
        (self.path / "f.txt").write_text(text + "\n")
        git("add", "f.txt", cwd=self.path)
        git("commit", "-q", "-m", text, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def torrent(self, out: Path, *args: str) -> tuple[Path, str]:
        """`gitp2p torrent REPO --all -o OUT`; (OUT, its stderr+stdout)."""
        proc = gitp2p("torrent", str(self.path), "--all", "-o", str(out), *args)
        text = (proc.stdout + proc.stderr).decode()
        assert proc.returncode == 0, text
        return out, text


def download(publisher: Publisher, torrent: Path, dest: Path) -> dict[str, bytes]:
    """What a client writes after downloading the torrent: DEST/packs/<file> for each file, with
    every piece checked against the torrent.  The bytes come from where the publisher has them:
    packs from its pack cache, the manifest rebuilt, the signature kept by the signer."""
    from gitfs_p2p.git.repo import GitRepo
    from gitfs_p2p.store.source import PackSource
    from gitfs_p2p.store.torrents import select_refs

    meta = parse_torrent(torrent.read_bytes())
    repo = GitRepo(str(publisher.path))
    source = PackSource(repo)
    files: dict[str, bytes] = {}
    try:
        manifest, label = select_refs(source, [], all_refs=True)
        for f in meta.files:
            name = f.path[-1]
            if name.endswith(".pack"):
                data = source.pack(name[: -len(".pack")].encode())
            elif name.endswith(".gitp2p-refs"):
                data = manifest.to_bytes()
            elif name.endswith(".gitp2p-sig"):
                data = (Path(repo.git_dir) / "gitp2p" / "signed" / name).read_bytes()
            else:
                raise AssertionError(f"unexpected file {name}")
            assert len(data) == f.length, name
            files[name] = data
    finally:
        source.close()
        repo.close()
    stream = b"".join(files[f.path[-1]] for f in meta.files)
    pl = meta.piece_length
    assert [hashlib.sha1(stream[i : i + pl]).digest() for i in range(0, len(stream), pl)] == list(meta.pieces)
    packs = dest / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (packs / name).write_bytes(data)
    return files


def watch_once(directory, into, *extra: str) -> tuple[int, str]:
    proc = gitp2p("watch", str(directory), "--into", str(into), "--bare", "--once", *extra)
    return proc.returncode, proc.stderr.decode()


def receiver(path: Path, allowed: Path | None) -> Path:
    git("init", "-q", "--bare", str(path))
    if allowed is not None:
        git("config", "gitp2p.allowedSignersFile", str(allowed), cwd=path)
    return path


"""`git push gitp2p://KEY/NAME REFSPEC...`: the pushing repository publishes its own refs.

A name is a key's, and the key lives with a repository (trust/names.py): the repository
that holds KEY's key is the publisher, so a push updates *its own* refs (a refspec
`main:release` sets its `refs/heads/release`; `main` alone changes nothing there), makes
sure a seed of it publishes NAME (gitp2p.publishName; a running `gitp2p seed`/`publish`
takes it up at its next poll, otherwise `gitp2p seed GIT_DIR --daemon` is started with the
engine settings from git config), and waits until the seed has put the name for a torrent
whose manifest holds the pushed refs (GIT_DIR/gitp2p/published).

A push publishes the refs it pushes: when the repository publishes chosen refs
(gitp2p.publishRefs, `gitp2p publish REPO REF...`), a pushed ref that is not among them is
added to them (and said); refs not pushed stay as they were, published or not.

The seed must stay up for others to download: the pushing repository keeps seeding
after git returns (stop it with the `kill PID` line the push prints), as a server would.
"""

from __future__ import annotations

import subprocess
import sys
import time

from ..errors import FetchError, GitfsError
from ..git.runner import run_git
from ..trust.names import Name, published_choice, publisher_key, set_published_choice
from .fetch import Options

__all__ = ["PushSpec", "parse_push", "push", "published_refs"]

#: At least this long for a started seed to mount, build its torrents and publish.
MIN_PUBLISH_WAIT = 180.0


class PushSpec:
    def __init__(self, src: str, dst: str, force: bool):
        self.src, self.dst, self.force = src, dst, force


def parse_push(rest: str) -> PushSpec:
    """`[+]<src>:<dst>` of a `push` command."""
    force = rest.startswith("+")
    src, sep, dst = rest[1 if force else 0:].partition(":")
    if not sep or not dst:
        raise FetchError(f"git sent a push command without a destination: {rest[:80]!r}")
    return PushSpec(src, dst, force)


def published_refs(git_dir: str, name: Name) -> dict[str, str]:
    """What the repository's seed published last under this name ({} if nothing)."""
    from ..seed.service import read_published

    record = read_published(git_dir)
    refs = record.get("refs")
    if record.get("address") != name.address or not isinstance(refs, dict):
        return {}
    return {k: v for k, v in refs.items() if isinstance(k, str) and isinstance(v, str)}


def _rev(git_dir: str, rev: str, *, peel: bool = True) -> str | None:
    out = run_git("rev-parse", "--verify", "--quiet", rev + ("^{}" if peel else ""), git_dir=git_dir,
                  check=False).strip()
    return out or None


def _update(git_dir: str, spec: PushSpec) -> str | None:
    """Move the repository's own ref as the refspec says; why not, or None."""
    if not spec.src:
        return "deleting a published ref: delete it in the publishing repository itself"
    new = _rev(git_dir, spec.src)
    if new is None:
        return f"{spec.src}: no such revision"
    if spec.src == spec.dst:
        return None
    old = _rev(git_dir, spec.dst)
    if old == new:
        return None
    if old is not None and not spec.force:
        if spec.dst.startswith("refs/tags/"):
            return "already exists"
        ff = subprocess.run(["git", f"--git-dir={git_dir}", "merge-base", "--is-ancestor", old, new],
                            stdin=subprocess.DEVNULL, capture_output=True)
        if ff.returncode != 0:
            return "non-fast-forward"
    head = run_git("symbolic-ref", "--quiet", "HEAD", git_dir=git_dir, check=False).strip()
    bare = run_git("rev-parse", "--is-bare-repository", git_dir=git_dir, check=False).strip() == "true"
    if head == spec.dst and not bare:
        return "it is the checked-out branch of the publishing repository"
    run_git("update-ref", "-m", "gitp2p push", spec.dst, new, *([old] if old else []), git_dir=git_dir)
    return None


def _seed_args(opts: Options) -> list[str]:
    """The publishing seed's engine options, from the pushing repository's git config."""
    args: list[str] = []
    for host, port in (_split(n) for n in opts.dht_nodes):
        args += ["--dht-node", f"{host}:{port}"]
    if not opts.dht_nodes:
        args.append("--dht")
    host, port = _split(opts.listen[0])
    if host not in ("0.0.0.0", "::"):
        args += ["--listen", host, "--port", str(port)]
    if not opts.utp:
        args.append("--no-utp")
    return args


def _split(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def push(git_dir: str, name: Name, specs: list[PushSpec], opts: Options, say) -> list[str]:
    """The answer lines to git (`ok DST` / `error DST WHY`) for one push batch."""
    from ..cli.seed import _seed_running

    try:
        key = publisher_key(git_dir)
    except GitfsError as exc:
        return [f"error {s.dst} this repository does not hold the key of {name.address} ({exc})" for s in specs]
    if key.public != name.public_key:
        return [f"error {s.dst} this repository publishes under key {key.public.hex()}, not {name.key_hex}"
                for s in specs]
    current = run_git("config", "--get", "gitp2p.publishName", git_dir=git_dir, check=False).strip()
    if current and current != name.name:
        return [f"error {s.dst} this repository publishes as {current!r}: git config gitp2p.publishName "
                f"{name.name} to publish as {name.name!r} instead" for s in specs]
    answers: dict[str, str | None] = {}
    for spec in specs:
        answers[spec.dst] = _update(git_dir, spec)
    # as a manifest names them: an annotated tag by the tag object's id
    wanted = {s.dst: _rev(git_dir, s.dst, peel=False) for s in specs if answers[s.dst] is None}
    if wanted:
        choice = published_choice(git_dir)
        added = sorted(set(wanted) - set(choice)) if choice else []
        if added:
            set_published_choice(git_dir, choice + tuple(added))
            say(f"gitp2p: {' '.join(added)} added to the refs {name.address} publishes (gitp2p.publishRefs)")
        if not current:
            run_git("config", "gitp2p.publishName", name.name, git_dir=git_dir)
        pid = _seed_running(git_dir)
        if pid is None:
            pid = _start_seed(git_dir, name, opts, say)
        say(f"gitp2p: waiting for the seed (pid {pid}) to publish {name.address}")
        wait = max(opts.timeout, MIN_PUBLISH_WAIT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            refs = published_refs(git_dir, name)
            if all(refs.get(dst) == oid for dst, oid in wanted.items()):
                break
            time.sleep(0.25)
        else:
            for dst in wanted:
                answers[dst] = f"the seed (pid {pid}) did not publish it within {wait:g}s (see its log)"
    return [f"ok {dst}" if why is None else f"error {dst} {why}" for dst, why in answers.items()]


def _start_seed(git_dir: str, name: Name, opts: Options, say) -> int:
    # gitp2p.publishName (and gitp2p.publishRefs) are set: the seed publishes by them
    cmd = [sys.executable, "-m", "gitfs_p2p.cli", "seed", git_dir, "--daemon", *_seed_args(opts)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=MIN_PUBLISH_WAIT)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise FetchError(f"could not start the publishing seed: {why}")
    # "gitp2p: seeding in the background (pid N, log FILE); `kill N` stops it"
    line = next((ln for ln in proc.stdout.splitlines() if "seeding in the background (pid " in ln), "")
    say(line if line.startswith("gitp2p:") else f"gitp2p: {line}")
    try:
        return int(line.split("(pid ", 1)[1].split(",", 1)[0])
    except (IndexError, ValueError):
        raise FetchError(f"the publishing seed said no pid: {proc.stdout.strip()[-200:]!r}") from None

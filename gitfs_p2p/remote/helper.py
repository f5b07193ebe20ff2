"""git-remote-gitp2p: git's remote helper for `gitp2p::` addresses (gitremote-helpers(7)).

git runs it as `git-remote-gitp2p REMOTE ADDRESS` with GIT_DIR set, and talks to it
on stdin/stdout: `capabilities`, `option NAME VALUE`, `list`, a batch of
`fetch SHA NAME` lines.  Everything for people goes to stderr.  The engine
(torrentcore.session) starts at the first `list` and lives until git hangs up, so
the metadata and manifest fetched for `list` serve the `fetch` that follows.
See docs/remote-helper.md.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import trio

from torrentcore.session import Engine, EngineError

from ..errors import FetchError, GitfsError, find_in_group
from ..git.runner import run_git
from ..receive.collector import settle_gc
from .address import parse_address
from .fetch import Fetcher, Progress, engine_config, options_from_config
from .push import parse_push, published_refs, push

__all__ = ["main", "Helper"]

log = logging.getLogger(__name__)

USAGE = """\
usage: git-remote-gitp2p REMOTE ADDRESS

git runs this for addresses that start with gitp2p::, for example
  git clone gitp2p::magnet:?xt=urn:btih:<info-hash>&tr=<tracker> DIR
  git clone gitp2p::/path/to/all.torrent DIR        (or an http(s):// URL of a .torrent)
  git clone gitp2p://<public key>/<name> DIR        (the publisher's newest torrent, via the DHT)
  git push gitp2p://<public key>/<name> BRANCH      (in the repository holding that key: it
                                                     publishes its refs, seeding in the background)
  git -C DIR fetch
It downloads the packs of the commits DIR lacks with its own BitTorrent engine,
checks and imports them, and lets git set the refs. Settings (git config):
  gitp2p.timeout SECONDS   give up after this long without data (default 60)
  gitp2p.lan true          find peers on the local network (BEP 14)
  gitp2p.dht true          use the DHT (public routers; gitp2p.dhtNode HOST:PORT instead)
  gitp2p.peer HOST:PORT    also connect to this peer (repeatable)
  gitp2p.listen HOST:PORT  where the engine listens (default 0.0.0.0:0 and [::]:0)
  gitp2p.utp false         TCP only
  gitp2p.allowedSignersFile FILE
                           take refs only from manifests signed by a key in FILE
                           (git's allowed-signers format; see docs/trust.md);
                           git clone -c gitp2p.allowedSignersFile=FILE keeps it
"""


class Helper:
    """One conversation with git."""

    def __init__(self, remote: str, url: str, git_dir: str, *, stdin=None, stdout=None):
        self.remote = remote
        self.url = url
        self.git_dir = git_dir
        self.stdin = stdin or sys.stdin.buffer
        self.stdout = stdout or sys.stdout.buffer
        self.opts = options_from_config(git_dir)
        self.address = parse_address(url)
        if self.address.kind == "name":
            self.opts.dht = True  # names live in the DHT (public routers unless gitp2p.dhtNode is set)
        self.engine: Engine | None = None
        self.fetcher: Fetcher | None = None
        self._nursery = None
        self.check_connectivity = False  # git asked us to (a clone): see Fetcher._lock_tips

    # -- talking to git -----------------------------------------------------------------
    async def _readline(self) -> str | None:
        line = await trio.to_thread.run_sync(self.stdin.readline, abandon_on_cancel=True)
        if not line:
            return None
        return line.decode("utf-8", "surrogateescape").rstrip("\n")

    def _write(self, text: str) -> None:
        self.stdout.write(text.encode("utf-8", "surrogateescape"))
        self.stdout.flush()

    def _report(self, text: str) -> None:
        if self.opts.verbosity > 1:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._converse()
            finally:
                nursery.cancel_scope.cancel()

    async def _converse(self) -> None:
        while True:
            line = await self._readline()
            if not line:  # EOF, or the blank line that ends the conversation
                break
            command, _, rest = line.partition(" ")
            log.debug("git: %s", line if command != "fetch" else "fetch (a batch)")
            if command == "capabilities":
                self._write("option\nfetch\npush\ncheck-connectivity\n\n")
            elif command == "option":
                self._write(self._option(rest) + "\n")
            elif command == "list" and rest == "for-push":
                self._list_for_push()
            elif command == "list":
                await self._list()
            elif command == "push":
                await self._push(await self._batch(command, rest))
            elif command == "fetch":
                await self._fetch(await self._batch(command, rest))
                self._write("\n")
            else:
                raise FetchError(f"git sent an unknown command {line[:80]!r}")
        log.debug("git hung up")
        if self.fetcher is not None:
            self.fetcher.clean()

    async def _batch(self, command: str, first: str) -> list[str]:
        """The arguments of a batch of `command` lines, up to the blank line that ends it.
        Read in one go (a clone's batch has a line per ref: a thread hand-off per line
        took 45-85 ms for 136 refs, measured)."""

        def read_batch() -> list[str]:
            lines = []
            while (line := self.stdin.readline().decode("utf-8", "surrogateescape").rstrip("\n")):
                lines.append(line)
            return lines

        batch = [first]
        for more in await trio.to_thread.run_sync(read_batch, abandon_on_cancel=True):
            if not more.startswith(command + " "):
                raise FetchError(f"git sent {more!r} inside a {command} batch")
            batch.append(more[len(command) + 1:])
        return batch

    def _option(self, rest: str) -> str:
        name, _, value = rest.partition(" ")
        if name == "progress":
            self.opts.progress = value == "true"
            return "ok"
        if name == "check-connectivity":
            self.check_connectivity = value == "true"
            return "ok"
        if name == "verbosity":
            try:
                self.opts.verbosity = int(value)
            except ValueError:
                return "error verbosity must be a number"
            return "ok"
        return "unsupported"

    # -- the commands ---------------------------------------------------------------------
    async def _open(self) -> Fetcher:
        if self.fetcher is None:
            if self.engine is None:
                self.engine = await self._nursery.start(Engine(engine_config(self.opts)).run)
            progress = Progress(self.opts.progress and self.opts.verbosity > 0)
            fetcher = Fetcher(self.engine, self.git_dir, self.address, self.opts, progress,
                              remote=self.remote, report=self._report)
            try:
                await fetcher.open()
            except BaseException:
                fetcher.clean_if_empty()
                raise
            self.fetcher = fetcher
        return self.fetcher

    async def _list(self) -> None:
        fetcher = await self._open()
        manifest = fetcher.manifest
        lines = []
        if manifest.head is not None and manifest.head in manifest.refs:
            lines.append(f"@{manifest.head} HEAD\n")
        for name in sorted(manifest.refs):
            lines.append(f"{manifest.refs[name]} {name}\n")
        self._write("".join(lines) + "\n")

    def _pushable(self):
        if self.address.kind != "name":
            raise FetchError("git push needs a gitp2p://KEY/NAME address (a torrent or magnet link names "
                             "fixed content); see docs/names.md")
        return self.address.name

    def _list_for_push(self) -> None:
        """The refs this repository's seed published under the name (git compares against them)."""
        refs = published_refs(self.git_dir, self._pushable())
        self._write("".join(f"{oid} {ref}\n" for ref, oid in sorted(refs.items())) + "\n")

    async def _push(self, batch: list[str]) -> None:
        name = self._pushable()
        specs = [parse_push(item) for item in batch]

        def say(line: str) -> None:
            if self.opts.verbosity > 0:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

        answers = await trio.to_thread.run_sync(push, self.git_dir, name, specs, self.opts, say)
        self._write("".join(line + "\n" for line in answers) + "\n")

    async def _fetch(self, batch: list[str]) -> None:
        fetcher = await self._open()
        wanted = {item.partition(" ")[0] for item in batch}
        named = set(fetcher.manifest.refs.values())
        strangers = sorted(wanted - named)
        if strangers:
            raise FetchError(f"git asked for {strangers[0]}, which torrent {fetcher.torrent.info_hash} does not publish")
        result = await fetcher.fetch(vouch=wanted if self.check_connectivity else ())
        fetcher.keep_for_seeding()
        self._report(f"gitp2p: {result.packs} packs ({result.bytes} bytes) fetched, {result.skipped} were "
                     f"here already; {result.received} bytes received from peers")
        if result.lock is not None:
            self._write(f"lock {result.lock}\nconnectivity-ok\n")
        log.debug("fetch answered%s", ", connectivity-ok" if result.lock is not None else "")


def _git_dir() -> str:
    git_dir = os.environ.get("GIT_DIR")
    if git_dir:
        return os.path.abspath(git_dir)
    out = run_git("rev-parse", "--git-dir", check=False).strip()
    if not out:
        raise FetchError("not in a git repository (git runs this helper with GIT_DIR set)")
    return os.path.abspath(out)


def main(argv: list[str] | None = None) -> int:
    """Run one conversation with git.  As the program (no argv given, the console script):
    leave with os._exit once everything is written, as git waits for this process to end
    before it checks out (see _leave)."""
    if argv is None:
        _leave(_main(sys.argv[1:]))
    return _main(argv)


def _leave(code: int) -> None:
    """Exit without the interpreter's teardown: 40-70 ms of freeing modules and objects
    (measured on a clone of 5,000 commits) that git would wait for.  Nothing is lost:
    every file this process wrote is closed and synced before the conversation ends
    (the importer's packs, its cache, the kept torrent), the `git config` it ran has
    finished, the engine is closed, and only stdout, stderr and the log handlers hold
    buffered bytes."""
    log.debug("exiting")
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]) or len(argv) not in (1, 2):
        sys.stdout.write(USAGE) if argv[:1] in (["-h"], ["--help"]) else sys.stderr.write(USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    remote = argv[0]
    url = argv[1] if len(argv) == 2 else argv[0]
    if url.startswith("gitp2p::"):
        url = url[len("gitp2p::"):]
    if os.environ.get("GITP2P_DEBUG"):
        # each line stamped with the UTC time of day, as GIT_TRACE2's (scripts/clone_timeline.py)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("gitp2p: %(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
        handler.formatter.converter = time.gmtime
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
        log.debug("started (modules imported)")
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="gitp2p: %(message)s")
    try:
        helper = Helper(remote, url, _git_dir())
        settle_gc()  # start-up is over; the import's passes make few cycles
        trio.run(helper.run)
    except BaseException as exc:  # noqa: B036 - sorted below; anything else is re-raised
        known = find_in_group(exc, (GitfsError, EngineError, KeyboardInterrupt))
        if isinstance(known, KeyboardInterrupt):
            sys.stderr.write("gitp2p: interrupted\n")
            return 130
        if known is None:
            raise
        sys.stderr.write(f"gitp2p: error: {known}\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The watch loop: a pass of the importer whenever DIR changes (inotify, recursively) or on a poll."""

from __future__ import annotations

import logging
import time
from typing import Callable

import trio
from inotify_simple import INotify, flags

from .importer import Importer
from .result import PassResult

__all__ = ["Watcher"]

log = logging.getLogger(__name__)


def _open_inotify() -> INotify | None:
    """An INotify, or None where the kernel refuses one (then DIR is polled)."""
    try:
        return INotify(nonblocking=True)
    except OSError as exc:
        log.info("inotify is unavailable (%s); polling instead", exc)
        return None


#: What makes a pass worth running; IN_Q_OVERFLOW is always reported.
_WATCH_MASK = (
    flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM | flags.MOVED_TO
    | flags.CREATE | flags.DELETE | flags.DELETE_SELF | flags.DONT_FOLLOW
)


class Watcher:
    """Runs the importer's passes whenever DIR changes (inotify, recursively), or every `poll` seconds."""

    def __init__(self, importer: Importer, *, poll: float = 1.0, on_pass: Callable[[PassResult], None] | None = None):
        self.importer = importer
        self.poll = poll
        self.on_pass = on_pass or (lambda result: None)
        self._inotify = None
        self._watched: set[str] = set()

    def _watch_dirs(self) -> int:
        """Watch the directories the last pass saw; returns how many were not watched before."""
        if self._inotify is None:
            return 0
        added = 0
        for d in self.importer.dirs:
            if d not in self._watched:
                try:
                    self._inotify.add_watch(d, _WATCH_MASK)
                    self._watched.add(d)
                    added += 1
                except OSError as exc:
                    log.info("cannot watch %s (%s); it is polled", d, exc)
        return added

    async def _wait_for_change(self, timeout: float) -> None:
        if self._inotify is None:
            await trio.sleep(timeout)
            return
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(self._inotify.fileno())
            await trio.sleep(0.1)  # let a burst of events coalesce
        events = list(self._inotify.read(timeout=0))
        if any(e.mask & flags.DELETE_SELF for e in events):  # a watched directory went away
            self._watched.clear()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._inotify = _open_inotify()
        try:
            first = True
            while True:
                result = await trio.to_thread.run_sync(self.importer.run_pass)
                new_watches = self._watch_dirs()
                self.on_pass(result)
                if first:
                    task_status.started()
                    first = False
                if new_watches:
                    # A file written into a directory after the pass scanned it but before its
                    # watch was added raised no event: one more pass, at once, sees it (a
                    # client's first files land in packs/ just as the watcher starts).
                    await trio.sleep(0)
                    continue
                busy = result.changing or result.incomplete
                if self._inotify is None:
                    timeout = self.poll
                elif result.quiet_until:
                    # A file left alone in its quiet period (a manifest too) is looked at again
                    # as soon as it ends: the last files of a download are imported that soon.
                    timeout = max(result.quiet_until - time.time(), 0.0) + 0.01
                else:
                    # inotify wakes us on change; a short timeout still re-checks files in
                    # their settle period, a long one is a safety net.
                    timeout = (self.importer.quiet + 0.05 if result.changing
                               else max(self.poll, self.importer.quiet) if busy else 30.0)
                await self._wait_for_change(timeout)
        finally:
            if self._inotify is not None:
                self._inotify.close()

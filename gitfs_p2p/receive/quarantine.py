"""The watcher's quarantine: where refused files go, and the record that remembers why.

A refused file is renamed into GIT_DIR/gitp2p/quarantine/ when DIR and REPO share a
file system.  Otherwise it is never copied (a 20 GiB sparse file must not fill the
disk): it stays where it is and is recorded with its identity (device, inode, size,
mtime), so later passes skip it without reading it, until it changes.

Two files under quarantine/: `log`, one human line per refusal
(`<time> <path in DIR> -> <where it is now>: <reason>`), and `records`, one JSON
object per line for the watcher itself (which object a file was named for, its
reason, its identity when left in place).  Both only ever grow by appended lines; a
full disk loses a line, never the repository.  Reading the records looks at the
last RECORDS_READ bytes only, so a flood of hostile files cannot make start-up slow.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import dataclass

__all__ = ["Quarantine", "QuarantineRecord", "RECORDS_READ"]

log = logging.getLogger(__name__)

#: How much of the end of the records file is read at start-up.
RECORDS_READ = 4 << 20


@dataclass(frozen=True)
class QuarantineRecord:
    path: str  # relative to DIR, as it was found
    object_id: str | None  # the commit or tag the file was named for
    reason: str
    where: str  # the quarantined file's name, or "left in place"
    key: tuple | None = None  # (dev, ino, size, mtime_ns) of a file left in place


class Quarantine:
    def __init__(self, directory: str):
        self.dir = directory
        self.by_object: dict[str, QuarantineRecord] = {}
        self.left_in_place: dict[tuple, QuarantineRecord] = {}
        self._load()

    def _load(self) -> None:
        path = os.path.join(self.dir, "records")
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - RECORDS_READ))
                data = fh.read()
        except OSError:
            return
        lines = data.split(b"\n")
        if size > RECORDS_READ:
            lines = lines[1:]  # the first may be cut
        for line in lines:
            try:
                raw = json.loads(line)
                record = QuarantineRecord(
                    str(raw["path"]), raw.get("object"), str(raw["reason"]), str(raw["where"]),
                    tuple(raw["key"]) if raw.get("key") else None,
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line
            self._remember(record)

    def _remember(self, record: QuarantineRecord) -> None:
        if record.object_id:
            self.by_object[record.object_id] = record
        if record.key is not None:
            self.left_in_place[record.key] = record

    def known(self, key: tuple) -> QuarantineRecord | None:
        """The record of a file left in place with exactly this identity, if any."""
        return self.left_in_place.get(key)

    def put(self, path: str, rel: str, object_id: str | None, reason: str, key: tuple | None) -> QuarantineRecord:
        """Move the file at path into quarantine (or leave it, see the module docstring) and record it."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = os.path.basename(path)
        where = "left in place"
        kept_key = key
        try:
            os.makedirs(self.dir, exist_ok=True)
            dest = os.path.join(self.dir, f"{stamp}-{base}")
            n = 1
            while os.path.lexists(dest):
                n += 1
                dest = os.path.join(self.dir, f"{stamp}-{n}-{base}")
            os.rename(path, dest)  # the file (or link) itself; never follows a link
            where, kept_key = os.path.basename(dest), None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY, errno.ENOSPC):
                log.warning("cannot move %s into quarantine (%s); left in place", rel, exc.strerror)
        record = QuarantineRecord(rel, object_id, reason, where, kept_key)
        self._remember(record)
        self._append("log", f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {rel} -> {where}: {reason}\n")
        self._append("records", json.dumps({
            "time": int(time.time()), "path": rel, "object": object_id, "reason": reason, "where": where,
            "key": list(kept_key) if kept_key else None,
        }) + "\n")
        return record

    def _append(self, name: str, line: str) -> None:
        try:
            with open(os.path.join(self.dir, name), "a") as fh:
                fh.write(line)
        except OSError as exc:  # a full disk loses this line, nothing else
            log.warning("cannot write quarantine/%s (%s)", name, exc.strerror)

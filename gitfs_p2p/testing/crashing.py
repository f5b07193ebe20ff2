"""`python -m gitfs_p2p.testing.crashing POINT[:N] ARGS...`: the command line, killed at a moment.

Runs `gitp2p ARGS...` (or, when ARGS start with `git-remote-gitp2p`, the remote helper) with a hook (gitfs_p2p.faults) that SIGKILLs the process the N-th time
(default: the first) it reaches the named moment, so a test can check that a kill -9 there
loses nothing.  The named moments are listed in docs/watcher.md.
"""

from __future__ import annotations

import os
import signal
import sys

from .. import faults
from ..cli import main as cli_main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec, args = argv[0], argv[1:]
    point, _, nth = spec.partition(":")
    limit = int(nth or 1)
    seen = 0

    def hook(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen >= limit:
                os.kill(os.getpid(), signal.SIGKILL)

    faults.install(hook)
    if args[:1] == ["git-remote-gitp2p"]:
        from ..remote.helper import main as helper_main

        return helper_main(args[1:])
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())

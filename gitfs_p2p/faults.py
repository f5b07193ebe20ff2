"""Named moments where a test may stop the process: kill -9 at any of them must lose nothing.

Product code marks a moment with `reached("after-cache")`; that does nothing unless a
test installed a hook (gitfs_p2p.testing.crashing runs the command line with one that
SIGKILLs the process at the N-th time a named moment is reached).  No environment
variable, no test logic, in product code.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["reached", "install"]

_hook: Callable[[str], None] | None = None


def reached(name: str) -> None:
    if _hook is not None:
        _hook(name)


def install(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook

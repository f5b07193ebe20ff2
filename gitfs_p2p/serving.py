"""A long-running trio service in the foreground of its process, until a signal: the one
loop behind `gitp2p mount` (the mount service) and `gitp2p seed` (the seeding service)."""

from __future__ import annotations

import logging
import signal
from typing import Callable

import trio

__all__ = ["serve_until_signal"]

log = logging.getLogger(__name__)


async def serve_until_signal(service, on_ready: Callable[[], None], *, stopping: str = "stopping") -> None:
    """Start `service.run` (a trio service taking task_status) and call on_ready once it
    has started; SIGINT, SIGTERM or SIGHUP end it, logged as "SIGNAL: <stopping>", and so
    does its run returning (a mount unmounted from outside).  The service cleans up in its
    own cancellation."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def run_service(task_status=trio.TASK_STATUS_IGNORED):
                await service.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(run_service)
            on_ready()
            async for signum in signals:
                log.info("%s: %s", signal.Signals(signum).name, stopping)
                nursery.cancel_scope.cancel()
                break

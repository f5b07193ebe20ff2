"""An engine closes as soon as it is told: its alert pump is woken, not left to its timeout."""

from __future__ import annotations

import trio

import torrentcore.session as session
from torrentcore.session import Engine, EngineConfig


def test_an_idle_engine_closes_without_waiting_for_its_pump(monkeypatch):
    # The pump blocks in wait_for_alert for PUMP_WAIT_MS; made a minute here, closing an
    # idle engine (no alert to come) would take up to that minute if nothing woke it.
    monkeypatch.setattr(session, "PUMP_WAIT_MS", 60_000)

    async def main():
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(Engine(EngineConfig(listen=("127.0.0.1:0",), utp=False)).run)
                await trio.sleep(0.5)  # the start-up alerts are in, the pump waits again
                nursery.cancel_scope.cancel()

    trio.run(main)

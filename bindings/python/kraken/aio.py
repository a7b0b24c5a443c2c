"""Running a kraken Loop from asyncio: a periodic non-blocking step on the asyncio loop.

    async def main():
        client = power.connect()
        await kraken.aio.run(client.loop)          # or: handle = kraken.aio.attach(client.loop)
"""

import asyncio
from typing import Optional

from .engine import Loop


async def run(loop: Loop, *, interval: float = 0.002,
              stop: Optional[asyncio.Event] = None) -> None:
    """Step ``loop`` until ``stop`` is set (or the task is cancelled): whatever is ready runs
    at once, then the coroutine yields to asyncio for ``interval`` s when nothing was ready."""
    while stop is None or not stop.is_set():
        ran = loop.step(0)
        await asyncio.sleep(0 if ran else interval)


def attach(loop: Loop, aloop: Optional[asyncio.AbstractEventLoop] = None,
           interval: float = 0.002) -> asyncio.Task:
    """Run ``loop`` in the background of the asyncio loop; cancel the task to detach."""
    aloop = aloop or asyncio.get_event_loop()
    return aloop.create_task(run(loop, interval=interval))

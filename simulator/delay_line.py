"""One direction of an emulated network path with a fixed one-way delay.

Like netem's delay (and unlike a bandwidth limit), every piece of bytes is delivered a
fixed time after it arrived, and pieces keep their order: a per-direction queue of
(due time, bytes) drained by one task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from llmping.simulator.sse import sleep_until_ns

log = logging.getLogger(__name__)

# Marks the end of the stream in the queue: close the writer when it comes due.
_END = b""


class DelayLine:
    """Deliver bytes to a writer delay_ms after they arrived, in arrival order."""

    def __init__(self, writer: asyncio.StreamWriter, delay_ms: float, label: str) -> None:
        self._writer = writer
        self._delay_ns = round(delay_ms * 1_000_000)
        self._label = label
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._accepting = True
        # Set once the writer is closed, after the end marker or a failed write.
        self.closed = asyncio.Event()
        self._task = asyncio.create_task(self._deliver(), name=f"delay-line {label}")

    def send(self, data: bytes, arrived_ns: int) -> None:
        """Queue data that arrived at arrived_ns (perf_counter_ns) for delivery."""
        if self._accepting and data:
            self._queue.put_nowait((arrived_ns + self._delay_ns, data))

    def send_local(self, data: bytes) -> None:
        """Queue a response from the proxy itself: no path delay, but after all queued data."""
        if self._accepting and data:
            self._queue.put_nowait((0, data))

    def end(self, arrived_ns: int | None) -> None:
        """Close the writer delay_ms after arrived_ns, or once the queue drains when None."""
        if not self._accepting:
            return
        self._accepting = False
        due_ns = 0 if arrived_ns is None else arrived_ns + self._delay_ns
        self._queue.put_nowait((due_ns, _END))

    async def aclose(self) -> None:
        """Stop delivering at once and close the writer."""
        self._accepting = False
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _deliver(self) -> None:
        try:
            while True:
                due_ns, data = await self._queue.get()
                await sleep_until_ns(due_ns)
                if data == _END:
                    break
                self._writer.write(data)
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("delay line %s stopped: %s", self._label, exc)
        finally:
            self._accepting = False
            self._writer.close()
            self.closed.set()

"""In-process fan-out hub: one producer side, many SSE clients with bounded queues.

Each client owns a ``Client`` with a bounded queue. Updates are keyed: a newer update
for the same key replaces the queued one (latest state wins), so a slow client gets
fewer, fresher frames and never holds anyone else up. ``close_all`` ends every stream
at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Update:
    """One thing that changed: ``topic`` (what kind), ``key`` (which one), ``payload``."""

    topic: str
    key: str
    payload: Any = None


class _Stop:
    pass


STOP = _Stop()


@dataclass(eq=False)
class Client:
    """One connected stream: a filter and a coalescing queue of pending updates."""

    accepts: Callable[[Update], bool]
    max_pending: int = 512
    pending: OrderedDict[tuple[str, str], Update] = field(default_factory=OrderedDict)
    closed: bool = False
    dropped: int = 0
    coalesced: int = 0
    # The stream's wait in ``next_batch``, woken by ``offer`` and ``close``.
    _waiter: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    def offer(self, update: Update) -> None:
        """Queue ``update`` unless filtered out; replace an older one with the same key."""
        if self.closed or not self.accepts(update):
            return
        slot = (update.topic, update.key)
        if slot in self.pending:
            self.coalesced += 1
            self.pending[slot] = update
            self.pending.move_to_end(slot)
        else:
            if len(self.pending) >= self.max_pending:
                # Oldest pending key loses; the client resyncs that key on the next change.
                self.pending.popitem(last=False)
                self.dropped += 1
            self.pending[slot] = update
        self._wake()

    def close(self) -> None:
        """Mark the stream finished; its generator returns on the next wait."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_batch(self, timeout: float, limit: int = 0) -> list[Update] | _Stop | None:
        """Wait up to ``timeout`` for updates; ``None`` on timeout, ``STOP`` when closed.

        With ``limit`` at most that many updates are taken, oldest first; the rest stay
        queued (still coalescing), so every key gets its turn within a few frames.
        """
        if not self.pending and not self.closed:
            # A bare future and a timer rather than ``wait_for(event.wait())``: that makes a task per
            # wait, and with a thousand streams each waiting several times a second it showed in profiles.
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self.pending and not self.closed:
                return None
        if self.closed:
            return STOP
        if limit and len(self.pending) > limit:
            batch = [self.pending.popitem(last=False)[1] for _ in range(limit)]
            return batch
        batch = list(self.pending.values())
        self.pending.clear()
        return batch


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Hub:
    """Broadcasts ``Update``s to every subscribed ``Client``."""

    def __init__(self) -> None:
        self._everything: set[Client] = set()  # subscribed without topics
        self._by_topic: dict[str, set[Client]] = {}
        self._by_key: dict[tuple[str, str], set[Client]] = {}
        self._slots: dict[Client, list[set[Client]]] = {}  # where each client is indexed
        self._listeners: list[Callable[[Update], None]] = []
        self.closed = False
        self.published = 0

    def add_listener(self, listener: Callable[[Update], None]) -> None:
        """Call ``listener(update)`` synchronously for every published update (in-process users)."""
        self._listeners.append(listener)

    @property
    def client_count(self) -> int:
        """Number of connected streams."""
        return len(self._slots)

    def subscribe(
        self,
        accepts: Callable[[Update], bool] | None = None,
        max_pending: int = 512,
        *,
        topics: Iterable[str] | None = None,
        keys: Iterable[tuple[str, str]] = (),
    ) -> Client:
        """Register a new client; call ``unsubscribe`` in a ``finally``.

        ``topics`` (every key of these topics) and ``keys`` (single ``(topic, key)`` pairs)
        say what the client can accept at all, so ``publish`` offers an update only to the
        clients indexed under it: with 1,000 streams each following one entity, a state
        change costs one offer, not a thousand filter calls. ``accepts`` still decides.
        Without ``topics`` the client is offered everything.
        """
        client = Client(accepts or (lambda _u: True), max_pending=max_pending)
        if self.closed:
            client.close()
        slots: list[set[Client]] = []
        if topics is None:
            slots.append(self._everything)
        else:
            slots.extend(self._by_topic.setdefault(topic, set()) for topic in topics)
            slots.extend(self._by_key.setdefault(key, set()) for key in keys)
        for slot in slots:
            slot.add(client)
        self._slots[client] = slots
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client (idempotent)."""
        client.close()
        for slot in self._slots.pop(client, ()):
            slot.discard(client)

    def publish(self, update: Update) -> None:
        """Offer ``update`` to the clients indexed under it (never blocks)."""
        self.published += 1
        for listener in self._listeners:
            try:
                listener(update)
            except Exception:
                log.exception("hub listener failed")
        for slot in (self._everything, self._by_topic.get(update.topic), self._by_key.get((update.topic, update.key))):
            if slot:
                for client in list(slot):
                    client.offer(update)

    def close_all(self) -> None:
        """End every stream (shutdown); later subscribers are closed immediately."""
        self.closed = True
        for client in list(self._slots):
            client.close()

"""Gathers work queued by many requests of one process and hands it on in groups, from a thread.

A purchase queues its payout's delivery once it commits. Publishing one Celery message costs the
web worker about as much CPU as the purchase's two database statements together
(docs/benchmarks.md), so the purchase only adds its payout here and returns; a background thread
sends what arrived within `wait` seconds, up to `most` at a time, as one message.

What is gathered lives in memory until it is sent: a process killed in that window (at most
`wait` seconds, plus the time the send takes) loses it. Use this only for work that something
else finds again — the payout sweeper resumes every PENDING payout that no message reached.
A process that exits normally sends what it still holds first (atexit).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Gatherer:
    """`add(item)` from any thread; `send(items)` is called from one background thread per process
    with the items in the order they came, at most `most` at a time. A group is sent `wait` seconds
    after the thread takes up its first item (sooner when `most` have arrived): after it arrived,
    or after the previous group was sent when more than `most` were waiting."""

    def __init__(self, send: Callable[[list], None], *, wait: float, most: int, name: str):
        self._send, self.wait, self.most, self.name = send, wait, most, name
        self._exit_flush = False
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        """A new process (or a forked child) starts empty, with fresh locks: a parent's thread may
        have held them when it forked, and its items are its own to send."""
        self._items: list = []
        self._arrived = threading.Condition()  # guards _items and _thread
        self._sending = threading.Lock()  # held while a group is being sent: the exit flush waits for it
        self._thread: threading.Thread | None = None

    def add(self, item) -> None:
        with self._arrived:
            if self._thread is None or not self._thread.is_alive():  # first use in this process, or the thread died
                self._start()
            self._items.append(item)
            if len(self._items) == 1 or len(self._items) == self.most:
                self._arrived.notify()

    def flush(self) -> None:
        """Sends, in this thread, everything added so far that the background thread has not sent,
        after the group it may be sending right now (at exit)."""
        with self._arrived:
            items, self._items = self._items, []
        with self._sending:
            for start in range(0, len(items), self.most):
                self._send_logged(items[start:start + self.most])

    def _start(self) -> None:
        if not self._exit_flush:  # registered once: a forked child inherits its parent's registration
            atexit.register(self.flush)
            self._exit_flush = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._arrived:
                while not self._items:
                    self._arrived.wait()
                deadline = time.monotonic() + self.wait
                while len(self._items) < self.most and (left := deadline - time.monotonic()) > 0:
                    self._arrived.wait(left)
                group, self._items = self._items[: self.most], self._items[self.most :]
                self._sending.acquire()  # before the condition's lock is let go: flush cannot slip in between
            try:
                self._send_logged(group)
            finally:
                self._sending.release()

    def _send_logged(self, group: list) -> None:
        if not group:
            return
        try:
            self._send(group)
        except Exception:  # the thread must live on; what was lost is found by whoever owns it (above)
            logger.exception("%s: could not send %d gathered items", self.name, len(group))

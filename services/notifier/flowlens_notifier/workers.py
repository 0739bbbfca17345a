"""The notifier's delivery threads, one per target (transports.deliver), so a slow target holds up
neither the others nor the reading: the service hands a due message to an idle target's thread and
takes the results, (target, message, delivered, error), from one queue. A thread holds one message
at a time; what waits stays in the target's outbox (outbox.py).
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Iterator

from flowmodel.logs import fields

from . import transports

log = logging.getLogger(__name__)


class DeliveryWorker:
    """One target's delivery thread: takes a message, delivers it, reports (target, message, ok, error)."""

    def __init__(self, target: dict, results: queue.Queue, options: dict):
        self.target = target
        self.results = results
        self.options = options
        self.inbox: queue.Queue = queue.Queue(maxsize=1)
        self.busy = False
        self.thread = threading.Thread(target=self._run, name=f"notify-{target['name']}", daemon=True)

    def _run(self) -> None:
        while True:
            message = self.inbox.get()
            if message is None:
                return
            try:
                transports.deliver(self.target, message, **self.options)
                self.results.put((self.target["name"], message, True, ""))
            except transports.DeliveryError as e:
                self.results.put((self.target["name"], message, False, str(e)))
            except Exception as e:  # a bug in rendering: counted as a failure, with its traceback
                log.exception("delivery raised", extra=fields(target=self.target["name"]))
                self.results.put((self.target["name"], message, False, f"internal error: {e!r}"))


class DeliveryWorkers:
    """A worker per target (``targets``: name -> target); inert until ``start()``."""

    def __init__(self, targets: dict[str, dict], options: dict):
        self.results: queue.Queue = queue.Queue()
        self.workers = {name: DeliveryWorker(t, self.results, options) for name, t in targets.items()}

    def start(self) -> None:
        for w in self.workers.values():
            w.thread.start()

    def busy(self, name: str) -> bool:
        return self.workers[name].busy

    def any_busy(self) -> bool:
        return any(w.busy for w in self.workers.values())

    def hand(self, name: str, message) -> None:
        """Give ``name``'s idle thread a message to deliver."""
        w = self.workers[name]
        w.busy = True
        w.inbox.put(message)

    def finished(self, wait_s: float) -> Iterator[tuple]:
        """The results the threads reported, (target name, message, delivered, error), waiting up to
        ``wait_s`` for the first; a target's thread is idle again once its result is taken."""
        try:
            item = self.results.get(timeout=wait_s) if wait_s > 0 else self.results.get_nowait()
        except queue.Empty:
            return
        while True:
            self.workers[item[0]].busy = False
            yield item
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                return

    def stop(self) -> None:
        """Tell each thread still running to end once its delivery under way is over."""
        for w in self.workers.values():
            if w.thread.is_alive():
                try:
                    w.inbox.put_nowait(None)
                except queue.Full:
                    pass

"""Stopping cleanly: a Space is restarted with SIGTERM on every rebuild.

On SIGTERM (or Ctrl-C) the app refuses new requests with a message, lets the running ones
finish (bounded), deletes its temp folder and exits 0, so no visitor's answer is cut off
and no photo is left on disk.
"""

import logging
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from explain.errors import ServerStoppingError
from explain.temp_folder import remove_own

log = logging.getLogger(__name__)
STOPPING_MESSAGE = "The app is restarting and takes no new photos: please try again in a minute."
ANSWER_SECONDS = 1.0  # after the last request is computed, time for Gradio to send its answer


class RunningRequests:
    """Counts the requests being computed; once `drain` is called it admits no more."""

    def __init__(self):
        self._changed = threading.Condition()
        self._running = 0
        self._stopping = False

    @contextmanager
    def admit(self):
        """Wrap one request: refused with ServerStoppingError once the app is stopping."""
        with self._changed:
            if self._stopping:
                raise ServerStoppingError(STOPPING_MESSAGE)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def drain(self, timeout: float) -> tuple[int, int]:
        """Admit no new request and wait up to `timeout` seconds for the running ones to finish.
        Returns (running when called, still running at the end)."""
        with self._changed:
            self._stopping, running = True, self._running
            self._changed.wait_for(lambda: self._running == 0, timeout)
            return running, self._running


def wait_for_stop_signal() -> signal.Signals:
    """Block until SIGTERM or SIGINT arrives (the handlers run in this, the main, thread)."""
    received: list[signal.Signals] = []
    stop = threading.Event()

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum))
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stop.wait(0.5):  # a timed wait, so the handler runs promptly
        pass
    return received[0]


def serve_until_stopped(demo, running: RunningRequests, temp_folder: Path, drain_seconds: float) -> None:
    """Run a launched Gradio app (`demo`) until SIGTERM or SIGINT, then stop it cleanly: new requests
    are refused with STOPPING_MESSAGE, running ones get `drain_seconds` to finish and their answers a
    moment to go out, then the server closes and `temp_folder` (the app's own) is deleted."""
    signum = wait_for_stop_signal()
    log.info("%s received: taking no new requests, giving the running ones up to %.0f s", signum.name,
             drain_seconds)
    running_then, unfinished = running.drain(drain_seconds)
    time.sleep(ANSWER_SECONDS)
    demo.close(verbose=False)
    removed = remove_own(temp_folder)
    log.info("Stopped: %d request(s) were running, %d did not finish in time; %d temp file(s) deleted",
             running_then, unfinished, removed)

"""Deleting uploaded photos and drawn heatmaps shortly after the answer: nothing is kept.

Gradio's own sweeper (`delete_cache`) iterates its sets of tracked files in a worker thread
while requests add to those sets; the first "Set changed size during iteration" ends it,
silently, for the rest of the process, and files pile up from then on. This sweeper walks
the folder instead, so it needs no shared state and one failed pass never stops the next.
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def sweep(folder: Path, max_age: float, keep: frozenset[Path] = frozenset()) -> int:
    """Delete files under `folder` not modified for `max_age` seconds, except those in `keep` (the
    app's example photos, which Gradio serves from there), then folders left empty.
    Returns how many files were deleted."""
    if not folder.is_dir():
        return 0
    cutoff, removed = time.time() - max_age, 0
    paths = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)  # contents before their folder
    for path in paths:
        try:
            if path.is_dir():
                if path.stat().st_mtime < cutoff and not any(path.iterdir()):
                    path.rmdir()
            elif path.lstat().st_mtime < cutoff and path not in keep:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # deleted meanwhile
            continue
        except OSError as err:  # a folder that just got a file, or no permission
            log.warning("Could not delete %s: %s", path, err)
    return removed


def start_sweeper(folder: Path, every: float, max_age: float, keep: frozenset[Path] = frozenset(),
                  then: Callable[[], object] = lambda: None) -> threading.Thread:
    """Sweep `folder` every `every` seconds for the life of the process (a daemon thread), and call
    `then` after each pass (the app hands freed memory back, explain.memory.trim)."""

    def loop():
        while True:
            time.sleep(every)
            try:
                sweep(folder, max_age, keep)
                then()
            except Exception:  # keep sweeping whatever one pass met
                log.exception("Sweeping %s failed; trying again in %s s", folder, every)

    thread = threading.Thread(target=loop, name="temp-file-sweeper", daemon=True)
    thread.start()
    return thread

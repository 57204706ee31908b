"""The app's temporary files: a folder of its own inside Gradio's, so it deletes nothing it did not write.

Gradio keeps uploads and the answers' images in one temp folder that every Gradio app on the machine
shares (`/tmp/gradio` unless `GRADIO_TEMP_DIR` is set). The app deletes its files there soon after
each answer and all of them when it stops; so that it never deletes another app's (a second copy of
this one, a replica, any other Gradio app), it points Gradio at a fresh folder inside that one,
`skin-explain-XXXXXXXX`, and sweeps only that. A lock held for the life of the process marks the folder
as in use: a folder whose lock nobody holds belongs to a copy that was killed, and the next start
deletes it, so no photo outlives its app. This module is also the one place that reaches into
Gradio's internals (its upload folder and its cache writer), an upgrade risk kept in one spot.
"""

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

PREFIX = "skin-explain-"
LOCK = ".in-use"  # held (flock) by the app that owns the folder
UNLOCKED_GRACE_SECONDS = 600  # a folder with no lock file yet may be a start in progress: left alone this long

_held: list = []  # the open lock files: a lock lives as long as its file object


def own_temp_folder() -> Path:
    """Create this process's folder inside Gradio's temp folder, lock it, and make Gradio write there
    (`GRADIO_TEMP_DIR`, read whenever Gradio looks for its folder, so call this before building the app).
    Folders left by killed copies are deleted first."""
    base = Path(get_upload_folder())
    base.mkdir(parents=True, exist_ok=True)
    remove_abandoned(base)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    lock = open(folder / LOCK, "w")  # noqa: SIM115 (held open for the life of the process)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held.append(lock)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def remove_abandoned(base: Path) -> list[Path]:
    """Delete the app's folders under `base` that no running copy holds; returns them."""
    removed = []
    for folder in base.glob(PREFIX + "*"):
        try:
            if _abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except FileNotFoundError:  # another start removed it meanwhile
            continue
    return removed


def _abandoned(folder: Path) -> bool:
    """True when no running copy holds the folder's lock (or it never got one and is past the grace time)."""
    lock_path = folder / LOCK
    if not lock_path.is_file():
        return time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_SECONDS
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its app is running
            return False
    return True


def remove_own(folder: Path) -> int:
    """Delete this process's folder and everything in it (when it stops); returns how many files it held."""
    files = sum(1 for p in folder.rglob("*") if p.is_file() and p.name != LOCK)
    shutil.rmtree(folder, ignore_errors=True)
    return files


def cache_examples(photos: list[str], folder: Path) -> frozenset[Path]:
    """Copy the example photos to where Gradio serves them from (`folder`), so they work for the life of
    the process; returns the copies, with the lock file, for the sweeper to keep."""
    return frozenset(Path(save_file_to_cache(p, str(folder))) for p in photos) | {folder / LOCK}

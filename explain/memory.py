"""Handing freed memory back to the system, where the C library is glibc (Linux, a Space).

Each request decodes a photo of its own size (a phone's 12 megapixels, a thumbnail) in whichever
thread serves it. glibc gives each thread an arena of its own and keeps what was freed there for
reuse, so resident memory drifts with the mix of photo sizes although the app keeps nothing
(docs/reliability.md). The app calls `malloc_trim` after each sweep of the temp folder, which hands
back what the arenas hold free. Two settings are made before the request threads start
(docs/reliability.md has what soaks showed): `SKIN_MALLOC_MMAP_THRESHOLD` fixes the size from which a
buffer gets pages of its own that go back when it is freed (`mallopt(M_MMAP_THRESHOLD)`, 128 KiB unless
set; left to itself, glibc raises that size to the largest buffer freed so far, after which photo-sized
buffers stay in the arenas), and `SKIN_MALLOC_ARENAS` caps the arenas (`mallopt(M_ARENA_MAX)`, off
unless set). TensorFlow's own tensors come from its BFC allocator, which `app.py` chooses, so the fixed
threshold maps only the app's photo buffers and costs little. Where the C library is not glibc all three
do nothing.
"""

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 (both exist only in glibc)
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas from now on (0: leave glibc's default); True when set."""
    return _mallopt("M_ARENA_MAX", M_ARENA_MAX, arenas)


def fix_mmap_threshold(size: int) -> bool:
    """Buffers of `size` bytes or more mapped on their own from now on (0: leave glibc's sliding
    threshold); True when set."""
    return _mallopt("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, size)


def _mallopt(name: str, option: int, value: int) -> bool:
    libc = _glibc()
    if not value or libc is None:
        return False
    if not libc.mallopt(option, value):
        log.warning("glibc refused %s=%s; memory use is unchanged", name, value)
        return False
    return True


def trim() -> bool:
    """Return the free pages at the top and inside every arena to the system; True when some were."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))

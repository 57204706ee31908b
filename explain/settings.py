"""Configuration in one place: every setting the library and app read, with its default.

Each one can be overridden by the environment variable named beside it, so a Space,
a test or a shell sets them the same way.
"""

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL_DIR = PROJECT_ROOT / "default_model"
EXAMPLES_DIR = PROJECT_ROOT / "examples"


@dataclass(frozen=True)
class Settings:
    model_dir: str | None = None  # SKIN_MODEL_DIR: a local model folder; wins over the Hub
    model_repo: str | None = None  # SKIN_MODEL_REPO: "org/name" on the Hugging Face Hub
    model_revision: str | None = None  # SKIN_MODEL_REVISION: branch, tag or 40-hex commit
    fallback_to_bundled: bool = False  # SKIN_MODEL_FALLBACK=1: bundled model if the configured one fails
    hub_timeout: float = 10.0  # SKIN_HUB_TIMEOUT: seconds the Hub may take to answer before the cache is used
    max_upload_bytes: int = 20_000_000  # SKIN_MAX_UPLOAD_BYTES (20 MB, as the refusal says)
    max_pixels: int = 40_000_000  # SKIN_MAX_PIXELS: width x height, checked before decoding
    host: str = "127.0.0.1"  # SKIN_HOST, else GRADIO_SERVER_NAME, else 0.0.0.0 on a Space
    port: int = 7860  # python app.py --port, else SKIN_PORT, else GRADIO_SERVER_PORT
    share: bool = False  # SKIN_SHARE=1: ask Gradio for a public link
    concurrency: int = 2  # SKIN_CONCURRENCY: requests computed at once (see docs/performance.md)
    queue_size: int = 32  # SKIN_QUEUE_SIZE: waiting requests beyond this are told "busy, try again"
    cache_sweep_seconds: int = 60  # SKIN_CACHE_SWEEP: uploads and outputs are deleted this often...
    cache_max_age_seconds: int = 120  # ...once older than this (SKIN_CACHE_MAX_AGE)
    drain_seconds: float = 10.0  # SKIN_DRAIN_SECONDS: on SIGTERM, how long running requests may take to finish
    malloc_arenas: int = 0  # SKIN_MALLOC_ARENAS: at most this many glibc malloc arenas (explain.memory; 0: glibc's own)
    malloc_mmap_threshold: int = 128 * 1024  # SKIN_MALLOC_MMAP_THRESHOLD: a buffer this large is mapped alone (0: glibc's sliding threshold)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        on_space = env.get("SYSTEM") == "spaces"
        return cls(
            model_dir=env.get("SKIN_MODEL_DIR") or None,
            model_repo=env.get("SKIN_MODEL_REPO") or None,
            model_revision=env.get("SKIN_MODEL_REVISION") or None,
            fallback_to_bundled=_flag(env.get("SKIN_MODEL_FALLBACK")),
            hub_timeout=float(env.get("SKIN_HUB_TIMEOUT", cls.hub_timeout)),
            max_upload_bytes=int(env.get("SKIN_MAX_UPLOAD_BYTES", cls.max_upload_bytes)),
            max_pixels=int(env.get("SKIN_MAX_PIXELS", cls.max_pixels)),
            host=env.get("SKIN_HOST") or env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else cls.host),
            port=int(env.get("SKIN_PORT") or env.get("GRADIO_SERVER_PORT") or cls.port),
            share=_flag(env.get("SKIN_SHARE")),
            concurrency=int(env.get("SKIN_CONCURRENCY", cls.concurrency)),
            queue_size=int(env.get("SKIN_QUEUE_SIZE", cls.queue_size)),
            cache_sweep_seconds=int(env.get("SKIN_CACHE_SWEEP", cls.cache_sweep_seconds)),
            cache_max_age_seconds=int(env.get("SKIN_CACHE_MAX_AGE", cls.cache_max_age_seconds)),
            drain_seconds=float(env.get("SKIN_DRAIN_SECONDS", cls.drain_seconds)),
            malloc_arenas=int(env.get("SKIN_MALLOC_ARENAS", cls.malloc_arenas)),
            malloc_mmap_threshold=int(env.get("SKIN_MALLOC_MMAP_THRESHOLD", cls.malloc_mmap_threshold)),
        )


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")

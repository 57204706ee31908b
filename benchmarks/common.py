"""What every benchmark shares: the header naming the machine, the table printer, launching the app."""

import datetime
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def header() -> None:
    import gradio
    import keras
    import tensorflow as tf

    keras.utils.disable_interactive_logging()  # as the app does: no progress bars from Score-CAM's predict

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"\n{datetime.date.today().isoformat()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()}"
          f" | TF {tf.__version__} | Keras {keras.__version__} | Gradio {gradio.__version__}\n")


def table(header_row: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header_row) + " |")
    print("|" + "---|" * len(header_row))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def launch(script: str, env: dict, log: Path | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start a Gradio app (its output to `log`, else discarded); returns the process, its URL and
    seconds until it answered HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    output = open(log, "w") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, script], cwd=ROOT, env={**os.environ, **env, "SKIN_PORT": str(port)},
                               stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            if process.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"{script} did not start")
            time.sleep(0.2)

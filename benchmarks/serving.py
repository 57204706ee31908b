"""The launched app through its API: round trips under concurrent clients, start-up to the first
answer, and a restart after kill -9 under load.
"""

import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, launch, median_ms, model_folder, photo_jpeg, table


def round_trips(url: str, api_name: str, args_for, clients: int, per_client: int) -> tuple[list[float], float]:
    """Latencies of `clients` concurrent gradio_client users, and requests per second."""
    from gradio_client import Client

    latencies, lock = [], threading.Lock()

    def user():
        client = Client(url, verbose=False)
        client.predict(*args_for(), api_name=api_name)  # warm this client up
        for _ in range(per_client):
            start = time.perf_counter()
            client.predict(*args_for(), api_name=api_name)
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=user) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.perf_counter() - started)


def api(requests: int) -> None:
    from gradio_client import handle_file

    photo = Path(tempfile.mkdtemp()) / "photo.jpg"
    photo.write_bytes(photo_jpeg())
    folder = model_folder("mobilenet_v2", Path(tempfile.mkdtemp()) / "mobilenet_v2")
    noop, noop_url, _ = launch("benchmarks/noop_app.py", {})
    noop_ms = 1000 * statistics.median(round_trips(noop_url, "/noop", lambda: [handle_file(str(photo))], 1, requests)[0])
    noop.terminate()

    from explain.overlay import jpeg_bytes
    from explain.page import DEFAULT_OPACITY
    from explain.service import Service
    from explain.settings import Settings

    service = Service.start(Settings(model_dir=str(folder)))
    path_ms = median_ms(lambda: jpeg_bytes(service.explain_photo(photo, opacity=DEFAULT_OPACITY).overlay), requests)
    rows = []
    for concurrency in (1, 2):
        app, url, _ = launch("app.py", {"SKIN_MODEL_DIR": str(folder), "SKIN_CONCURRENCY": str(concurrency)})
        for clients in (1, 4, 8):
            latencies, throughput = round_trips(
                url, "/explain", lambda: [handle_file(str(photo)), "Grad-CAM", "Most likely class", 0.45, 3, "coarse"],
                clients, max(2, requests // clients))
            p50, p95 = 1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 95)
            rows.append([concurrency, clients, f"{p50:.0f} ms", f"{p95:.0f} ms", f"{throughput:.1f}/s"])
        app.terminate()
    print("Through the API with gradio_client on 127.0.0.1 (MobileNetV2, /explain, 448x448 JPEG)\n")
    table(["do-nothing Gradio round trip", "in-process path", "budget: 1.2 x (sum)", "ours, 1 client (p50)",
           "ratio to the sum"],
          [[f"{noop_ms:.0f} ms", f"{path_ms:.0f} ms", f"{1.2 * (noop_ms + path_ms):.0f} ms", rows[0][2],
            f"{float(rows[0][2].split()[0]) / (noop_ms + path_ms):.2f}"]])
    table(["SKIN_CONCURRENCY", "clients", "p50", "p95", "throughput"], rows)


def startup(requests: int) -> None:
    """Process start to first answered API request, the first Compare against a warm one (the warm-up
    should have traced every method), and peak resident memory of the app process."""
    import psutil
    from gradio_client import Client, handle_file

    photo = ROOT / "examples" / "astronaut-face.jpg"
    rows = []
    setups = [("bundled default model", {})] if (ROOT / "default_model" / "model.keras").is_file() else []
    setups += [(f"random {b}", {"SKIN_MODEL_DIR": str(model_folder(b, Path(tempfile.mkdtemp()) / b))})
               for b in ("mobilenet_v2", "resnet50")]
    for name, env in setups:
        started = time.perf_counter()
        process, url, _ = launch("app.py", env)
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], psutil.Process(process.pid).memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        client = Client(url, verbose=False)
        client.predict(handle_file(str(photo)), 3, api_name="/predict")
        cold = time.perf_counter() - started
        compare = [handle_file(str(photo)), "Most likely class", 0.45, "fine"]
        start = time.perf_counter()
        client.predict(*compare, api_name="/compare")
        first_compare = 1000 * (time.perf_counter() - start)
        warm_compare = median_ms(lambda: client.predict(*compare, api_name="/compare"), 3)  # after one more call
        for _ in range(requests):
            client.predict(handle_file(str(photo)), "Grad-CAM", "Most likely class", 0.45, 3, "coarse",
                           api_name="/explain")
        stop.set()
        process.terminate()
        rows.append([name, f"{cold:.1f} s", f"{first_compare:.0f} ms", f"{warm_compare:.0f} ms",
                     f"{first_compare / warm_compare:.2f}", f"{peak[0] / 2**30:.2f} GB"])
    print("Cold start (process start to first answered /predict), the first /compare after it against a warm "
          f"one (fine maps), and peak RSS over {requests} /explain calls\n")
    table(["model", "cold start", "first /compare", "warm /compare (median of 3)", "first / warm",
           "peak resident memory"], rows)


def restart(clients: int, seconds: float) -> None:
    """The bundled model's app killed with SIGKILL under load, then started again on the same temp
    folder: process start to first answered /predict, against the same for its first start."""
    from gradio_client import Client, handle_file

    photo = handle_file(str(ROOT / "examples" / "psoriasis.jpg"))
    env = {"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": "", "GRADIO_TEMP_DIR": tempfile.mkdtemp(prefix="restart-")}

    def start() -> tuple:
        started = time.perf_counter()
        process, url, _ = launch("app.py", env)
        client = Client(url, verbose=False)
        answer = client.predict(photo, 3, api_name="/predict")[0]
        return process, url, time.perf_counter() - started, answer

    process, url, cold, before = start()
    answered = [0]

    def user():
        client = Client(url, verbose=False)
        while True:
            try:
                client.predict(photo, "Grad-CAM", "Most likely class", 0.45, 3, "fine", api_name="/explain")
            except Exception:  # killed
                return
            answered[0] += 1

    users = [threading.Thread(target=user, daemon=True) for _ in range(clients)]
    for thread in users:
        thread.start()
    time.sleep(seconds)
    process.kill()
    process.wait()
    for thread in users:
        thread.join(timeout=60)
    process, _, again, after = start()
    process.terminate()
    process.wait(timeout=60)
    print(f"kill -9 under load ({clients} clients asking for fine Grad-CAM maps for {seconds:.0f} s, "
          f"{answered[0]} answered), then a start on the same temp folder\n")
    table(["first start: to first answered /predict", "after kill -9: to first answered /predict",
           "same answer after the restart"],
          [[f"{cold:.1f} s", f"{again:.1f} s", "yes" if after == before else f"no: {after} against {before}"]])

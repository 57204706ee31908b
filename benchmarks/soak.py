"""The soak: long mixed traffic against the launched app, watched from outside.

Each client asks, at random, for /predict, /explain (every method, every map resolution) or
/compare, and about one request in ten is a bad upload (the tests' corpus of hostile files)
that must be refused with its own message; photos go from phone-size JPEGs down to
thumbnails. Every answer is checked against the first answer for the same photo, and every
heatmap is fetched. Every few seconds the app process's resident memory, open file
descriptors, threads and temp folder are sampled. After the load stops, the soak waits for
the temp folder and descriptors to come back to where they started.

`run` returns the figures for a test to check; `python -m benchmarks.bench soak` launches the
app with the bundled model, prints the table per window and draws `plot`.
"""

import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from PIL import Image

from benchmarks.common import ROOT, launch, table

sys.path.insert(0, str(ROOT / "tests"))
from bad_inputs import CASES  # noqa: E402  (the hostile files the tests refuse, as they are)

# phone camera, full HD, web photo, model-size, small, thumbnail
PHOTO_SIZES = [(4032, 3024), (1920, 1080), (1024, 768), (448, 448), (160, 120), (64, 48)]
SHARES = {"bad upload": 0.1, "/predict": 0.3, "/explain": 0.5, "/compare": 0.1}
REQUEST_TIMEOUT = 180.0  # seconds one answer may take before it counts as a failure
SAMPLE_SECONDS = 5.0


@dataclass(frozen=True)
class Sample:
    """The app process and its temp folder at one moment (seconds since the load started)."""

    seconds: float
    rss_bytes: int
    fds: int
    threads: int
    temp_files: int
    temp_bytes: int


@dataclass(frozen=True)
class Outcome:
    kind: str  # "/predict", "/explain", "/compare" or "bad upload"
    ended: float  # seconds since the load started
    seconds: float
    failure: str | None  # None: answered right, or refused with the expected message


@dataclass
class Window:
    start: float
    end: float
    outcomes: list[Outcome]
    samples: list[Sample]

    @property
    def valid(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind != "bad upload"]

    def latency_ms(self, percentile: int) -> float:
        latencies = sorted(o.seconds for o in self.valid)
        if len(latencies) < 2:
            return 1000 * latencies[0] if latencies else float("nan")
        return 1000 * statistics.quantiles(latencies, n=100, method="inclusive")[percentile - 1]

    @property
    def failures(self) -> int:
        return sum(o.failure is not None for o in self.outcomes)


@dataclass
class SoakResult:
    minutes: float
    clients: int
    baseline: Sample  # after the warm-up, before the load
    windows: list[Window]
    samples: list[Sample]
    settled: Sample  # the last sample after the load stopped
    settle_seconds: float  # how long after the load the temp folder and descriptors were back (inf: never)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"{o.kind}: {o.failure}" for o in self.outcomes if o.failure]

    @property
    def memory_growth(self) -> float:
        """The peak resident memory after the first window against the first window's peak (peaks,
        because the allocator's memory swings by a few percent from one sample to the next)."""
        first = max(s.rss_bytes for s in self.windows[0].samples)
        later = [s.rss_bytes for w in self.windows[1:] for s in w.samples] or [first]
        return max(later) / first - 1

    @property
    def p95_drift(self) -> float:
        """The last window's p95 latency against the first's."""
        return self.windows[-1].latency_ms(95) / self.windows[0].latency_ms(95) - 1


def soak_photos(folder: Path) -> list[Path]:
    """The app's example photos as JPEGs of every size in PHOTO_SIZES, one size per photo in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = []
    for i, example in enumerate(examples):
        size = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        path = folder / f"photo_{i:02d}_{size[0]}x{size[1]}.jpg"
        Image.open(example).convert("RGB").resize(size).save(path, quality=88)
        photos.append(path)
    return photos


def bad_uploads(folder: Path) -> list[tuple[Path, str]]:
    """(file, phrase its refusal must contain) for every hostile file the app refuses."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (_, data, expected) in enumerate(case for case in CASES if case[2]):
        path = folder / f"upload_{i:02d}.jpg"  # named like a photo, whatever it holds
        path.write_bytes(data)
        files.append((path, expected))
    return files


def sample(process: psutil.Process, temp_folder: Path, since: float) -> Sample:
    files = [Path(root) / name for root, _, names in os.walk(temp_folder) for name in names]
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except FileNotFoundError:  # swept meanwhile
            pass
    return Sample(time.monotonic() - since, process.memory_info().rss, process.num_fds(), process.num_threads(),
                  len(files), size)


class Load:
    """The clients: each a gradio_client session making one request after another until `deadline`."""

    def __init__(self, url: str, photos: list[Path], bad: list[tuple[Path, str]], seed: int = 0):
        from gradio_client import Client

        self.url, self.photos, self.bad = url, photos, bad
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        reference = Client(url, verbose=False, download_files=False)
        endpoints = reference.view_api(print_info=False, return_format="dict")["named_endpoints"]
        choices = {p["parameter_name"]: p["type"].get("enum") for p in endpoints["/explain"]["parameters"]}
        self.methods, self.resolutions = choices["method"], choices["resolution"]
        # the top class of every photo, as first answered: every later answer must agree
        self.expected = {photo: self._top_class(reference.predict(self._file(photo), 3, api_name="/predict")[0])
                         for photo in photos}

    @staticmethod
    def _file(path: Path):
        from gradio_client import handle_file

        return handle_file(str(path))

    @staticmethod
    def _top_class(label: dict) -> str:
        """The top class, or the headline where no class bar is shown ("not skin", "another condition")."""
        return label["confidences"][0]["label"] if label.get("confidences") else label["label"]

    def run(self, clients: int, seconds: float, since: float) -> None:
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self._client, args=(k, deadline, since), name=f"soak-client-{k}")
                   for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _client(self, k: int, deadline: float, since: float) -> None:
        from gradio_client import Client

        client = Client(self.url, verbose=False, download_files=False)
        with self.lock:
            rng = random.Random(self.rng.random() + k)
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < deadline:
                kind = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
                started = time.monotonic()
                try:
                    failure = self._request(client, http, kind, rng)
                except Exception as err:  # anything else: the request failed
                    failure = f"{type(err).__name__}: {err}"
                ended = time.monotonic()
                with self.lock:
                    self.outcomes.append(Outcome(kind, ended - since, ended - started, failure))

    def _request(self, client, http: httpx.Client, kind: str, rng: random.Random) -> str | None:
        """One request of `kind`; returns why it failed, or None."""
        from gradio_client.exceptions import AppError

        if kind == "bad upload":
            path, expected = rng.choice(self.bad)
            try:
                client.submit(self._file(path), 3, api_name="/predict").result(timeout=REQUEST_TIMEOUT)
            except AppError as err:
                if expected.lower() in str(err).lower():
                    return None
                return f"refused with {err!s:.120} (expected {expected!r})"
            return f"{path.name} ({expected}) was answered"
        photo = rng.choice(self.photos)
        if kind == "/predict":
            label, _ = client.submit(self._file(photo), 3, api_name="/predict").result(timeout=REQUEST_TIMEOUT)
            return self._check_top(photo, label)
        resolution = rng.choice(self.resolutions)
        if kind == "/explain":
            label, heatmap, *_ = client.submit(self._file(photo), rng.choice(self.methods), "Most likely class",
                                               0.45, 3, resolution, api_name="/explain").result(timeout=REQUEST_TIMEOUT)
            return self._check_top(photo, label) or self._check_image(http, heatmap)
        gallery, _ = client.submit(self._file(photo), "Most likely class", 0.45, resolution,
                                      api_name="/compare").result(timeout=REQUEST_TIMEOUT)
        if len(gallery) < len(self.methods):
            return f"the Compare view has {len(gallery)} maps"
        return self._check_image(http, rng.choice(gallery)["image"])

    def _check_top(self, photo: Path, label: dict) -> str | None:
        top, first = self._top_class(label), self.expected[photo]
        return None if top == first else f"{photo.name}: top class {top}, first answered {first}"

    def _check_image(self, http: httpx.Client, image: dict) -> str | None:
        """The heatmap the answer names is served and is a whole JPEG."""
        response = http.get(image["url"])
        if response.status_code != 200:
            return f"heatmap {image['url']} answered HTTP {response.status_code}"
        Image.open(io.BytesIO(response.content)).load()  # raises on a truncated file
        return None


def run(url: str, pid: int, temp_folder: Path, minutes: float, clients: int, window_seconds: float,
        settle_timeout: float, workdir: Path, progress=print) -> SoakResult:
    """Load the app at `url` (process `pid`, temp folder `temp_folder`) for `minutes` with `clients`
    clients, then wait up to `settle_timeout` seconds for its temp folder and file descriptors to be
    back to where they started."""
    process = psutil.Process(pid)
    load = Load(url, soak_photos(workdir / "photos"), bad_uploads(workdir / "bad"))
    start = time.monotonic()
    baseline = sample(process, temp_folder, start)
    samples, stop = [], threading.Event()

    def watch():
        while not stop.wait(SAMPLE_SECONDS):
            samples.append(sample(process, temp_folder, start))
            if len(samples) % max(1, int(window_seconds // SAMPLE_SECONDS)) == 0:
                with load.lock:
                    done, failed = len(load.outcomes), sum(o.failure is not None for o in load.outcomes)
                latest = samples[-1]
                progress(f"{latest.seconds / 60:5.1f} min: {done} requests, {failed} failed, "
                         f"{latest.rss_bytes / 2**20:.0f} MiB, {latest.fds} fds, {latest.temp_files} temp files")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    load.run(clients, 60 * minutes, start)
    stop.set()
    watcher.join()
    loaded_until = time.monotonic()
    during_load, settled = list(samples), sample(process, temp_folder, start)
    while not _back(settled, baseline) and time.monotonic() - loaded_until < settle_timeout:
        time.sleep(1)
        settled = sample(process, temp_folder, start)
        if settled.seconds - samples[-1].seconds >= SAMPLE_SECONDS:
            samples.append(settled)
    settle_seconds = time.monotonic() - loaded_until if _back(settled, baseline) else float("inf")
    samples.append(settled)
    windows = []
    for begin in range(0, int(60 * minutes), int(window_seconds)):
        end = min(begin + window_seconds, 60 * minutes)
        windows.append(Window(begin, end, [o for o in load.outcomes if begin <= o.ended < end or
                                           (end == 60 * minutes and o.ended >= end)],
                              [s for s in during_load if begin < s.seconds <= end] or [during_load[-1]]))
    return SoakResult(minutes, clients, baseline, windows, samples, settled, settle_seconds, load.outcomes)


def _back(now: Sample, baseline: Sample) -> bool:
    return now.temp_files <= baseline.temp_files and now.fds <= baseline.fds


def rows(result: SoakResult) -> list[list]:
    """One row per window: the table `python -m benchmarks.bench soak` prints."""
    table = []
    for w in result.windows:
        last = w.samples[-1]
        table.append([f"{w.start / 60:g}-{w.end / 60:g} min", len(w.valid), len(w.outcomes) - len(w.valid),
                      w.failures, f"{w.latency_ms(50):.0f} ms", f"{w.latency_ms(95):.0f} ms",
                      f"{last.rss_bytes / 2**20:.0f} MiB", last.fds, last.threads, last.temp_files,
                      f"{last.temp_bytes / 2**20:.1f} MiB"])
    return table


ROW_HEADER = ["window", "answered", "bad uploads refused", "failures", "p50", "p95", "resident memory",
              "open fds", "threads", "temp files", "temp size"]


def plot(result: SoakResult, path: Path) -> Path:
    """Resident memory, temp files and open descriptors over time, the load's end marked, above the
    latency of every request and each window's p50 and p95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, latency) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    minutes = [s.seconds / 60 for s in result.samples]
    memory.plot(minutes, [s.rss_bytes / 2**20 for s in result.samples], color="tab:blue", label="resident memory")
    memory.set_ylabel("resident memory (MiB)")
    memory.set_ylim(bottom=0)
    files = memory.twinx()
    files.plot(minutes, [s.temp_files for s in result.samples], color="tab:orange", alpha=0.7, label="temp files")
    files.plot(minutes, [s.fds for s in result.samples], color="tab:green", alpha=0.7, label="open fds")
    files.set_ylabel("temp files, open fds")
    files.set_ylim(bottom=0)
    memory.legend(handles=memory.get_lines() + files.get_lines(), loc="lower left", fontsize=8)
    memory.axvline(result.minutes, color="0.5", linestyle=":")
    memory.text(result.minutes, 0, " load stops", color="0.4", fontsize=8, va="bottom")
    valid = [o for o in result.outcomes if o.kind != "bad upload"]
    latency.scatter([o.ended / 60 for o in valid], [1000 * o.seconds for o in valid], s=2, color="0.75",
                    label="each request")
    middles = [(w.start + w.end) / 120 for w in result.windows]
    for percentile, style in ((50, "o-"), (95, "s-")):
        latency.plot(middles, [w.latency_ms(percentile) for w in result.windows], style, label=f"p{percentile}")
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("minutes under load")
    latency.legend(fontsize=8)
    fig.suptitle(f"Soak: {result.clients} clients, {result.minutes:g} minutes, {len(result.outcomes)} requests, "
                 f"{len(result.failures)} failed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(minutes: float, clients: int, window_minutes: float, plot_path: Path) -> None:
    """`python -m benchmarks.bench soak`: the bundled model's app under `clients` clients for `minutes`,
    its table, its figures against their targets and its plot."""
    from explain.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    temp, log = workdir / "gradio", workdir / "app.log"
    process, url, _ = launch("app.py", {"SKIN_MODEL_DIR": "", "SKIN_MODEL_REPO": "", "GRADIO_TEMP_DIR": str(temp)}, log)
    settings = Settings.from_env()
    sweep_bound = settings.cache_max_age_seconds + settings.cache_sweep_seconds
    try:
        result = run(url, process.pid, temp, minutes, clients, 60 * window_minutes, 2 * sweep_bound, workdir,
                              progress=lambda line: print(line, flush=True))
    finally:
        process.terminate()
        process.wait(timeout=60)
    app_log = log.read_text(errors="replace")
    bad = [o for o in result.outcomes if o.kind == "bad upload"]
    print(f"\nSoak: bundled model, {clients} clients, {minutes:g} minutes, windows of {window_minutes:g} minutes; "
          f"the app's log: {log}\n")
    table(ROW_HEADER, rows(result))
    table(["figure", "measured", "target"], [
        ["valid requests failed", f"{len(result.failures) - sum(o.failure is not None for o in bad)} of "
                                  f"{len(result.outcomes) - len(bad)}", "0"],
        ["bad uploads refused with their message", f"{sum(o.failure is None for o in bad)} of {len(bad)}", "all"],
        ["resident memory growth after the first window", f"{100 * result.memory_growth:+.1f}%", "< 5%"],
        ["p95, last window against the first", f"{100 * result.p95_drift:+.1f}%", "within 20%"],
        ["temp files and fds back to their start after the load", f"{result.settle_seconds:.0f} s "
         f"({result.baseline.temp_files} files, {result.baseline.fds} fds)",
         f"within max age + one sweep ({sweep_bound} s)"],
        ["tracebacks in the app's log", app_log.count("Traceback"), "0"],
    ])
    if result.failures:
        print("First failures:", *result.failures[:5], sep="\n  ")
    print(f"Plot: {plot(result, plot_path)}")

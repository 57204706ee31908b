"""`python -m explain PHOTO... [--top-k K] [--method M] [--cam-out DIR] [--json]`

Classify photos from the command line with the same model and code as the app: a table
(or JSON) of the most likely conditions per photo with the map's faithfulness check, and,
with --cam-out, CAM overlays as JPEG files.
"""

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from explain.cams import DEFAULT_METHOD, METHODS
from explain.errors import RequestError, SkinExplainError
from explain.overlay import checked_opacity, jpeg_bytes
from explain.page import DEFAULT_OPACITY, DEFAULT_TOP_K, verdict
from explain.service import Service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__.split("\n\n")[1])
    parser.add_argument("photos", nargs="+", type=Path, help="photo files (JPEG, PNG, WebP, ...)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many conditions to list")
    parser.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD, help="CAM method")
    parser.add_argument("--cam-out", type=Path, help="write a heatmap overlay JPEG per photo into this folder")
    parser.add_argument("--opacity", type=opacity, default=DEFAULT_OPACITY, help="heatmap opacity, 0..1")
    parser.add_argument("--resolution", choices=["coarse", "fine"],
                        help="map on the CAM layer (coarse) or on the layer twice as fine (default: fine where the "
                             "model has it, as on the page)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(argv)

    service = Service.start()
    if service.model is None:
        print(f"error: {service.model_error}", file=sys.stderr)
        return 2
    print(f"model: {service.model.config.name}, {service.model.source.describe()}", file=sys.stderr)
    if service.fallback_reason:
        print(f"(the configured model could not be loaded: {service.fallback_reason})", file=sys.stderr)
    if args.cam_out:
        args.cam_out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in tqdm(args.photos, desc="photos", unit="photo", disable=len(args.photos) < 3, file=sys.stderr):
        try:
            result = {"photo": str(path), **classify(service, path, args)}
        except SkinExplainError as err:
            failures += 1
            result = {"photo": str(path), "error": str(err)}
        tqdm.write(json.dumps(result) if args.json else format_row(result), file=sys.stdout)
    return 1 if failures else 0


def opacity(text: str) -> float:
    """--opacity, refused by argparse (usage line, exit 2) unless a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return checked_opacity(value)
    except RequestError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def classify(service: Service, path: Path, args) -> dict:
    """One photo's answer, with the map's faithfulness check; the overlay is drawn only for --cam-out."""
    if not path.exists():  # the library's own message speaks of an upload the server no longer has
        raise RequestError("No such file: check the path.")
    if path.is_dir():
        raise RequestError(f"This is a folder, not a photo: name its photos instead (for example {path}/*.jpg).")
    resolution = service.classifier.resolution(args.resolution)
    explained = service.explain_photo(path, args.method, opacity=args.opacity, resolution=resolution)
    explanation, check = explained.explanation, explained.check
    prediction = explanation.prediction
    share = f"{check.fraction:.0%}"
    said = verdict(prediction)
    result = {"top": prediction.top_k(args.top_k), "uncertain": prediction.uncertain,
              "verdict_kind": said["kind"], "classes": said["classes"], "coverage": said["coverage"],
              "verdict": (f"{said['text']} Map check ({explanation.method} of "
                          f"{explanation.target}): hiding its top {share} gives {check.map_hidden:.0%}, a random "
                          f"{share} {check.random_hidden:.0%} (from {check.probability:.0%})."),
              "faithfulness": check.as_dict()}
    if args.cam_out:
        overlay = args.cam_out / f"{path.stem}_{args.method.lower().replace('+', 'p')}_{resolution}.jpg"
        overlay.write_bytes(jpeg_bytes(explained.overlay))
        result["overlay"] = str(overlay)
    return result


def format_row(result: dict) -> str:
    if "error" in result:
        return f"{result['photo']}: ERROR {result['error']}"
    top = "  ".join(f"{name} {p:6.1%}" for name, p in result["top"].items())
    return f"{result['photo']}: {top}\n    {result['verdict']}"


if __name__ == "__main__":
    sys.exit(main())

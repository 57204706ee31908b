"""`python -m explain PHOTO... [--top-k K] [--method M] [--cam-out DIR] [--json]`

Classify photos from the command line with the same model and code as the app: a table
(or JSON) of the most likely conditions per photo, and Grad-CAM overlays as JPEG files.
"""

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from explain.cams import DEFAULT_METHOD, METHODS
from explain.errors import SkinExplainError
from explain.overlay import jpeg_bytes
from explain.service import Service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__.split("\n\n")[1])
    parser.add_argument("photos", nargs="+", type=Path, help="photo files (JPEG, PNG, WebP, ...)")
    parser.add_argument("--top-k", type=int, default=3, help="how many conditions to list (default 3)")
    parser.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD, help="CAM method")
    parser.add_argument("--cam-out", type=Path, help="write a heatmap overlay JPEG per photo into this folder")
    parser.add_argument("--opacity", type=float, default=0.45, help="heatmap opacity, 0..1")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(argv)

    service = Service.start()
    if service.classifier is None:
        print(f"error: {service.model_error}", file=sys.stderr)
        return 2
    print(service.model_status().replace("**", ""), file=sys.stderr)
    if args.cam_out:
        args.cam_out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in tqdm(args.photos, desc="photos", unit="photo", disable=len(args.photos) < 3, file=sys.stderr):
        result = {"photo": str(path)}
        try:
            top, heatmap, verdict = service.explain(path, args.method, None, args.opacity, args.top_k)
            result.update(top=top, verdict=verdict.replace("**", ""))
            if args.cam_out:
                result["overlay"] = str(args.cam_out / f"{path.stem}_{args.method.lower().replace('+', 'p')}.jpg")
                Path(result["overlay"]).write_bytes(jpeg_bytes(heatmap))
        except SkinExplainError as err:
            failures += 1
            result["error"] = str(err)
        tqdm.write(json.dumps(result) if args.json else format_row(result), file=sys.stdout)
    return 1 if failures else 0


def format_row(result: dict) -> str:
    if "error" in result:
        return f"{result['photo']}: ERROR {result['error']}"
    top = "  ".join(f"{name} {p:6.1%}" for name, p in result["top"].items())
    return f"{result['photo']}: {top}\n    {result['verdict']}"


if __name__ == "__main__":
    sys.exit(main())

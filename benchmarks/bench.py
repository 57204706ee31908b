"""Benchmarks: `python -m benchmarks.bench WHAT`, WHAT one of inprocess, methods, api, startup, restart,
input, resize, models, finetune, soak or all (every one but `models`, `finetune` and the hour-long `soak`);
each prints a table.

Ratios are taken within one run on one machine; absolute figures depend on the machine,
which the header names. Models have random weights (speed does not depend on them).
"""

import argparse
from pathlib import Path

from benchmarks import finetune_step, serving, soak, speed, training_input
from benchmarks.common import ROOT, header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["inprocess", "methods", "api", "startup", "restart", "input", "resize",
                                         "models", "finetune", "soak", "all"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--model-dirs", nargs="+", default=[], help="model folders for `models` (first: the baseline)")
    parser.add_argument("--configs", nargs="+", default=["configs/default_model.json", "configs/two_backbones.json"],
                        help="experiment configs for `finetune`")
    parser.add_argument("--minutes", type=float, default=60, help="soak: how long the load lasts")
    parser.add_argument("--clients", type=int, default=8, help="soak: concurrent clients")
    parser.add_argument("--window", type=float, default=5, help="soak: minutes per row of the table")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png", help="soak: where the plot goes")
    args = parser.parse_args()
    header()
    if args.what in ("inprocess", "all"):
        speed.inprocess(args.backbones, args.repeats)
    if args.what in ("methods", "all"):
        speed.methods(args.backbones, args.repeats)
    if args.what in ("api", "all"):
        serving.api(args.repeats)
    if args.what in ("startup", "all"):
        serving.startup(20)
    if args.what in ("restart", "all"):
        serving.restart(4, 20)
    if args.what in ("input", "all"):
        training_input.training_input(20)
    if args.what in ("resize", "all"):
        speed.resize_filters(900)
    if args.what == "models":
        speed.models(args.model_dirs, args.repeats)
    if args.what == "finetune":
        finetune_step.allocators(args.configs, args.repeats)
    if args.what == "soak":
        soak.report(args.minutes, args.clients, args.window, args.plot)


if __name__ == "__main__":
    main()

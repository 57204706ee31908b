"""`python -m training <step> --config FILE`: curate, split, augment, train, evaluate, export, publish, or all;
ablate compares settings, explanations measures the heatmaps."""

import argparse
import sys

from training import ablate, augment, curate, evaluate, explanations, export, publish, split, train
from training.config import ExperimentConfig

STEPS = {
    "curate": curate.run,
    "split": split.run,
    "augment": augment.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "export": export.run,
    "publish": publish.run,
    "ablate": ablate.run,
    "explanations": explanations.run,
}
STUDIES = ("ablate", "explanations")  # studies of a model, not steps toward it
IN_ALL = [name for name in STEPS if name not in STUDIES]

ALL_DOC = "Every step in order (augment only when balance_to is set); finished steps are skipped unless --force."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    for name in [*STEPS, "all"]:
        doc = sys.modules[STEPS[name].__module__].__doc__ if name in STEPS else ALL_DOC
        step = sub.add_parser(name, help=doc.strip().splitlines()[0], description=doc)
        step.add_argument("--config", required=True, help="experiment JSON (see configs/)")
        step.add_argument("--output-dir", help="override the config's output_dir")
        step.add_argument("--force", action="store_true", help="redo the step even if its outputs exist")
        if name in ("publish", "all"):
            step.add_argument("--dry-run", action="store_true", help="write the model folder, do not upload")
            step.add_argument("--repo", help="Hub repo id to upload to (overrides hub_repo)")
    args = parser.parse_args(argv)
    config = ExperimentConfig.load(args.config, output_dir=args.output_dir,
                                   hub_repo=getattr(args, "repo", None))
    print(f"config saved to {config.save()}")
    for name in IN_ALL if args.step == "all" else [args.step]:
        if name == "augment" and not config.balance_to:
            continue
        if name == "publish":
            publish.run(config, force=args.force, dry_run=args.dry_run or not config.hub_repo)
        else:
            STEPS[name](config, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m training <step> --config FILE`: curate, split, augment, train, evaluate, export, publish, or all;
ablate compares settings, explanations measures the heatmaps, score answers held-out photos with model folders,
calibrate gives a model folder its shortlist, other tries an explicit "another condition" output on its features,
card brings a model folder's card up to date (backbones, the fine-tune's cross-validation)."""

import argparse
import os
import sys

# TensorFlow's BFC allocator keeps the memory a training step freed for the next one; its default CPU
# allocator maps fresh pages for every large tensor, and the kernel spends CPU zeroing them (`python -m
# benchmarks.bench finetune`, docs/performance.md). Set before TensorFlow starts, for this command only
# (the app keeps the default); a caller's own setting wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from training.config import ExperimentConfig
from training.model.finetune import CheckpointError
from training.steps import (
    ablate,
    augment,
    calibrate,
    card,
    curate,
    evaluate,
    explanations,
    export,
    other_output,
    publish,
    score,
    split,
    train,
)

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
    "score": score.run,
    "calibrate": calibrate.run,
    "other": other_output.run,
    "card": card.run,
}
STUDIES = ("ablate", "explanations", "score", "calibrate", "other", "card")  # studies of a model, not steps toward it
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
        if name in ("train", "all"):
            step.add_argument("--resume", action="store_true",
                              help="continue an interrupted fine-tune from its last checkpoint")
        if name in ("score", "calibrate", "other", "card"):
            step.add_argument("--model-dir", nargs="+", required=True, help=f"model folders to {name}")
        if name == "score":
            step.add_argument("--unseen-by", nargs="*", default=[], metavar="SPLIT_CSV",
                              help="leave out photos in these splits' train or validation parts")
            step.add_argument("--card", action="store_true",
                              help="write the logo study into each folder's card (a model trained before it)")
        if name == "card":
            step.add_argument("--crossval", metavar="JSON",
                              help="the crossval.json of `python -m training.steps.jax_crossval report`")
        if name in ("publish", "all"):
            step.add_argument("--dry-run", action="store_true", help="write the model folder, do not upload")
            step.add_argument("--repo", help="Hub repo id to upload to (overrides publish.hub_repo)")
    args = parser.parse_args(argv)
    config = ExperimentConfig.load(args.config, output_dir=args.output_dir,
                                   publish={"hub_repo": getattr(args, "repo", None)})
    print(f"config saved to {config.save()}")
    try:
        run_steps(args, config)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def run_steps(args: argparse.Namespace, config: ExperimentConfig) -> None:
    for name in IN_ALL if args.step == "all" else [args.step]:
        if name == "augment" and not config.data.balance_to:
            continue
        if name == "publish":
            # always again: it checks the folder
            publish.run(config, dry_run=args.dry_run or not config.publish.hub_repo)
        elif name == "train":
            train.run(config, force=args.force, resume=args.resume)
        elif name in ("calibrate", "other"):
            STEPS[name](config, model_dirs=args.model_dir)
        elif name == "card":
            card.run(config, model_dirs=args.model_dir, crossval=args.crossval)
        elif name == "score":
            score.run(config, force=args.force, model_dirs=args.model_dir, unseen_by=args.unseen_by, card=args.card)
        else:
            STEPS[name](config, force=args.force)


if __name__ == "__main__":
    sys.exit(main())

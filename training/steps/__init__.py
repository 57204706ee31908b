"""The CLI's verbs, one module each: the pipeline's steps (curate, split, augment, train, evaluate,
export, publish) and the studies of a finished model (ablate, explanations, score, calibrate, other).
Each has `run(config, ...)`; `training/__main__.py` wires them to the command line."""

from pathlib import Path


def already_done(step: str, output: Path, force: bool) -> bool:
    """True (and says so) when the step's output exists and --force was not given."""
    if output.exists() and not force:
        print(f"{step}: {output} exists (use --force to redo)")
        return True
    return False

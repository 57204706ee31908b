"""Card (a study, not part of `all`): bring a model folder's card up to date with what its run's report lacks.

`python -m training card --config FILE --model-dir FOLDER [--crossval JSON]` writes into the folder's card
(and `publish.card_path` when the folder is the bundled one) the backbones with their ImageNet weights'
origin and licence, from the config, and, given the `crossval.json` that `python -m training.steps.jax_crossval
report` writes, the fine-tune's grouped cross-validation. A card `publish` writes has the backbones already;
the cross-validation runs on a machine with an accelerator, after the model is published.
"""

import json
from pathlib import Path

from explain.model import CARD_FILE
from training.config import ExperimentConfig
from training.report.card import (
    BACKBONES_HEADING,
    CROSSVAL_HEADING,
    backbones_section,
    cards_of,
    crossval_section,
    put_section,
)


def run(config: ExperimentConfig, model_dirs: list[str] = (), crossval: str | None = None) -> list[Path]:
    sections = {BACKBONES_HEADING: backbones_section(config)}
    if crossval:
        sections[CROSSVAL_HEADING] = crossval_section(json.loads(Path(crossval).read_text(encoding="utf-8")))
    written = []
    for folder in model_dirs:
        cards = cards_of(config, Path(folder))
        if not cards:
            raise SystemExit(f"card: {folder} has no card ({Path(folder) / CARD_FILE}); `python -m training "
                             "publish` writes one")
        for path in cards:
            text = path.read_text(encoding="utf-8")
            for heading, body in sections.items():
                text = put_section(text, heading, body)
            path.write_text(text, encoding="utf-8")
            print(f"card: {', '.join(sections)} written into {path}")
            written.append(path)
    return written

"""`config.json` of a model folder: how to feed the model, explain it and answer with it. One
dataclass, read strictly (an unknown or misspelled key is an error, never ignored)."""

import dataclasses
from dataclasses import dataclass, field

from explain.layers import PREPROCESSING
from explain.verdicts import SET_RULES, VERDICT_OF


@dataclass(frozen=True)
class ModelConfig:
    """`config.json`: how to feed the model and explain it."""

    name: str
    image_size: int
    preprocessing: str  # the layer of explain.layers.PREPROCESSING the model contains
    cam_layer: str | None = None  # None: the last 4-D convolutional activation
    temperature: float = 1.0  # divides the logits (fitted on validation data)
    # each score's threshold (explain.verdicts.VERDICTS; a missing or None one is off): "not a skin photo"
    # below "skin" (needs skin_readout.npy), "another condition" below "energy" or "similarity" (needs
    # class_means.npy), "unsure" below "top_probability"
    thresholds: dict = field(default_factory=dict)
    # the conformal prediction set (explain.verdicts.prediction_sets): {"score": "lac" or "aps",
    # "threshold": ..., "coverage": the share of photos like the test photos whose set holds the right
    # class, as stated, and "measured": the shares measured on held-out test photos}; None: no shortlist
    shortlist: dict | None = None

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        """Read and check `config.json`; a misspelled or unknown key is an error, never ignored. A
        folder written before the thresholds became one mapping (`skin_threshold`, ...) is read as well."""
        if not isinstance(data, dict):
            raise ValueError("config.json must hold a JSON object")
        data = _with_thresholds_mapping(data)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; config.json may hold {', '.join(known)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in data]
        if missing:
            raise ValueError(f"missing key(s) {', '.join(missing)}")
        config = cls(**data)
        if config.preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing {config.preprocessing!r} is not one of {', '.join(PREPROCESSING)}")
        if not isinstance(config.thresholds, dict) or set(config.thresholds) - set(VERDICT_OF):
            raise ValueError(f"thresholds must map scores ({', '.join(VERDICT_OF)}) to numbers or null")
        if config.shortlist is not None and (not isinstance(config.shortlist, dict)
                                             or config.shortlist.get("score") not in SET_RULES
                                             or not isinstance(config.shortlist.get("threshold"), (int, float))):
            raise ValueError(f"shortlist needs a score ({', '.join(SET_RULES)}) and a numeric threshold; "
                             "calibrate it with `python -m training calibrate` or remove it")
        return config

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _with_thresholds_mapping(data: dict) -> dict:
    """`config.json` with the old per-score keys (`skin_threshold`, ...) moved into `thresholds`."""
    old = {f"{name}_threshold": name for name in VERDICT_OF}
    if not set(old) & set(data):
        return data
    moved = {old[key]: value for key, value in data.items() if key in old}
    return {key: value for key, value in data.items() if key not in old} | {
        "thresholds": {**moved, **data.get("thresholds", {})}}

"""One experiment's settings: every path, hyperparameter and seed, saved next to its outputs.

A config is a JSON file; anything left out takes the default below. `python -m training
<step> --config FILE` reads it, and the run writes the full resolved copy to
`<output_dir>/config.json` so a result can always be traced to its settings.
"""

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

BLANK_BOXES = ("none", "own", "all")
BLUR_SIGMA = (0.1, 2.0)  # pixels: the range of the fine-tune's random blur (blur)


@dataclass
class Source:
    """A folder of class folders (or a manifest), mapped to the product's taxonomy."""

    name: str
    root: str  # "${SHARED}/data/..." expands SKIN_SHARED_DIR (default ../shared)
    taxonomy: str  # JSON file: source class -> target class, or null for out of taxonomy
    class_column: str | None = None  # manifest.csv column holding the class; None: parent folder
    cluster_column: str | None = None  # manifest.csv column of known near-duplicate groups
    mask_boxes: list[list[float]] = field(default_factory=list)  # [x0, y0, x1, y1] fractions to blank
    fine_column: str | None = None  # manifest.csv column of the fine-grained condition; None: the class
    # every photo shows a condition outside the taxonomy, but those its taxonomy (optional) maps to a class
    other_conditions: bool = False
    library: str | None = None  # the photo library it comes from (None: its name); leave-one-out leaves a library out

    @property
    def photo_library(self) -> str:
        return self.library or self.name


# Settings that change no weights: where the run lives, how it is evaluated, where it is published. An
# interrupted fine-tune resumes whatever they say (training.model.finetune); every other setting must match.
NOT_WEIGHTS = ("output_dir", "top_k", "tta", "cross_source", "skin_coverage", "other_condition_coverage",
               "answer_coverage", "shortlist_coverage", "ood_folders", "skin_readout_folders", "skin_readout_c",
               "harmful_mistakes", "explanation_photos", "ablations", "model_name", "hub_repo", "examples_dir",
               "bundle_dir", "card_path")


@dataclass
class ExperimentConfig:
    output_dir: str = "runs/experiment"
    sources: list[Source] = field(default_factory=list)
    seed: int = 1337
    # curate
    min_side: int = 64
    duplicate_distance: int = 2  # pHash bits: closer than this is the same photo, dropped
    cluster_distance: int = 6  # pHash bits: closer than this is a near duplicate, kept together
    # split
    test_fraction: float = 0.15
    val_fraction: float = 0.15
    cv_folds: int = 0  # 0: no cross-validation
    # augment (offline balancing, optional)
    balance_to: int = 0  # 0: off; else copies per class in training
    # model
    backbone: str = "mobilenet_v2"  # a name of training.model.backbones.BACKBONES, or two joined: "a+b"
    alpha: float = 1.0
    image_size: int = 224
    # None (random), one source for a single backbone, or backbone -> source; a source is a `.npy`
    # folder, a Keras weights file, "keras" (downloaded) or "default" (the registry's)
    imagenet_weights: str | dict | None = "${SHARED}/weights/mobilenet_v2_1.0_224_imagenet"
    dropout: float = 0.2
    feature_layers: list[str] = field(default_factory=list)  # backbone layers pooled into the features; [] the CAM layer
    fine_labels: bool = False  # train on the sources' fine-grained conditions, summed to the classes
    # which sources' mask_boxes are blanked: "none" (photos as the app receives them), "own" (each
    # source's own boxes) or "all" (every source's boxes in every photo)
    blank_boxes: str = "none"
    # online augmentation strength (0 turns each off): stage 1's Keras layers use flip to brightness;
    # the fine-tune (training.model.finetune) uses flip (with quarter turns), contrast, brightness and the rest
    flip: bool = True
    rotation: float = 0.1
    zoom: float = 0.15
    contrast: float = 0.15
    brightness: float = 0.15
    crop_min: float = 0.55  # fine-tune: random square crops of this share of the side, up to all of it
    saturation: float = 0.2
    hue: float = 0.03
    white_balance: float = 0.1  # per-channel gains of up to +-10%: another camera's colours
    jpeg_quality_min: int = 40  # re-compressed at a random JPEG quality from this to 100; 0: off
    erase: float = 0.5  # probability of a randomly erased rectangle (2-20% of the photo)
    blur: float = 0.0  # probability of a Gaussian blur of BLUR_SIGMA pixels (an out-of-focus camera), before JPEG
    # fine-tune: probability that a photo's logo box shows a logo (a marked library's own, or one pasted
    # from them), else it is blurred, whatever the library, so the logo tells nothing (training.data.logo); 0: off
    logo_swap: float = 0.0
    # training
    batch_size: int = 32
    head_on_features: bool = True  # stage 1 on features computed once (fast)
    head_augmented_copies: int = 0  # stage 1 on features: randomly augmented copies per photo (besides its mirror)
    head_epochs: int = 10
    head_learning_rate: float = 1e-3
    head_l2: float = 0.0  # weight decay (L2) of the head's weights
    finetune_epochs: int = 0  # stage 2 (training.model.finetune): 0 keeps the backbone frozen
    finetune_learning_rate: float = 1e-4  # the backbone's peak rate (AdamW, warm-up then cosine)
    finetune_head_learning_rate: float = 1e-3  # the head's
    finetune_warmup_epochs: int = 1
    finetune_weight_decay: float = 0.01
    finetune_ema: float = 0.0  # momentum of a moving average of the weights, validated and kept (0: off)
    # the fine-tune trains each backbone's last N layers: None each one's default (training.model.backbones), a
    # number for each, or backbone -> number
    unfreeze_layers: int | dict | None = None
    label_smoothing: float = 0.0
    class_weights: bool = False
    early_stopping_patience: int = 4
    # evaluate
    top_k: list[int] = field(default_factory=lambda: [3])
    tta: bool = False  # average the prediction with the mirrored photo's
    cross_source: bool = False  # also train on each source alone and test on the other
    # the verdicts (explain.verdicts; training.evaluation.abstention): "not a skin photo" below the skin
    # read-out's threshold, which keeps skin_coverage of validation skin photos; "another condition" below
    # the energy's or the similarity's, together keeping about other_condition_coverage of validation photos
    # of ours (each_score_coverage; 0: off; photos of other conditions, held out whole, measure it); "unsure"
    # below the top probability's, answering answer_coverage of them (0: off; a shortlist replaces it)
    skin_coverage: float = 0.995
    other_condition_coverage: float = 0.0
    answer_coverage: float = 0.0
    # the shortlist (training.evaluation.shortlist): the share of photos like the test photos whose conformal
    # prediction set holds the right class, as the page states it (0: off)
    shortlist_coverage: float = 0.0
    ood_folders: dict[str, str] = field(default_factory=dict)  # name -> folder of photos the model must not know
    # ood_folders whose one half fits the skin read-out (true: skin photos, false: not skin); the other half
    # is held out and measured. Without a not-skin folder there is no read-out and no "not a skin photo".
    skin_readout_folders: dict[str, bool] = field(default_factory=dict)
    skin_readout_c: float = 10.0  # inverse L2 strength of the read-out's logistic regression (chosen on validation)
    # class -> the classes its photos must not be answered as (the report counts how often they are)
    harmful_mistakes: dict[str, list[str]] = field(default_factory=dict)
    explanation_photos: int = 0  # the explanations study: 0 every test photo, else a seeded sample of this many
    # ablate: variant name -> the settings it changes (see training/steps/ablate.py)
    ablations: dict[str, dict] = field(default_factory=lambda: {
        "as configured": {},
        "image size 288": {"image_size": 288},
        "image size 352": {"image_size": 352},
        "no label smoothing": {"label_smoothing": 0.0},
        "no class weights": {"class_weights": False},
        "test-time mirroring": {"tta": True},
        "4 augmented copies per photo": {"head_augmented_copies": 4},
    })
    # publish
    model_name: str = "skin-condition-classifier"
    hub_repo: str | None = None  # "org/name"; publish uploads there unless --dry-run
    examples_dir: str | None = None  # photos (redistributable!) shipped in the model folder
    bundle_dir: str | None = None  # also copy the model folder here (the app's default_model/)
    card_path: str | None = None  # and the card here (the project's model_card.md)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "ExperimentConfig":
        """Read a config file; an unknown or misspelled key is named, with the keys that exist."""
        data = _read(Path(path))
        data.update({k: v for k, v in overrides.items() if v is not None})
        _check_keys(data, cls, str(path))
        for i, source in enumerate(data.get("sources", [])):
            _check_keys(source, Source, f"{path}, sources[{i}]")
        data["sources"] = [Source(**s) for s in data.get("sources", [])]
        config = cls(**data)
        missing = [name for name in config.skin_readout_folders if name not in config.ood_folders]
        if missing:
            raise ValueError(f"{path}: skin_readout_folders names {', '.join(map(repr, missing))}, which is not one "
                             f"of ood_folders ({', '.join(config.ood_folders) or 'none'}).")
        if config.blank_boxes not in BLANK_BOXES:
            raise ValueError(f"{path}: blank_boxes {config.blank_boxes!r} is not one of {', '.join(BLANK_BOXES)}.")
        if config.fine_labels and not config.head_on_features:
            raise ValueError(f"{path}: fine_labels needs head_on_features (the fine-grained head is trained on "
                             "cached features); set head_on_features to true or fine_labels to false.")
        return config

    def save(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "config.json"
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def each_score_coverage(other_condition_coverage: float) -> float:
    """What each of the two "another condition" scores keeps of validation photos of ours: each takes
    half of what other_condition_coverage leaves out."""
    return 1 - (1 - other_condition_coverage) / 2


def _read(path: Path) -> dict:
    """A config file's keys; with "extends" (a file named relative to this one), that file's keys
    updated by these, so a variant says only how it differs. A key's value replaces the base's whole."""
    data = json.loads(path.read_text(encoding="utf-8"))
    base = data.pop("extends", None)
    return data if base is None else _read(path.parent / base) | data


def _check_keys(data: dict, kind: type, where: str) -> None:
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        hints = [f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, names, 1))
                 else repr(key) for key in unknown]
        raise ValueError(f"{where}: unknown setting {', '.join(hints)}. Settings: {', '.join(names)}.")
    missing = [f.name for f in dataclasses.fields(kind)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data]
    if missing:
        raise ValueError(f"{where}: missing setting {', '.join(missing)}.")


def expand(path: str | None) -> str | None:
    """Expand `${SHARED}` (SKIN_SHARED_DIR, default ../shared beside the project) and `~`."""
    if path is None:
        return None
    shared = os.environ.get("SKIN_SHARED_DIR", str(Path(__file__).resolve().parent.parent.parent / "shared"))
    return os.path.expanduser(path.replace("${SHARED}", shared))

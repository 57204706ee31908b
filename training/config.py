"""One experiment's settings: every path, hyperparameter and seed, saved next to its outputs.

A config is a JSON file: the run's folder and seed, then one object per section (`SECTIONS`: data,
model, augment, training, evaluation, publish); anything left out takes the default below, and
`"extends"` starts from another file. `python -m training <step> --config FILE` reads it, and the
run writes the full resolved copy to `<output_dir>/config.json` so a result can always be traced
to its settings.
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


@dataclass
class DataSettings:
    """Where the photos come from and how they are curated and split (curate, split, augment)."""

    sources: list[Source] = field(default_factory=list)
    min_side: int = 64
    duplicate_distance: int = 2  # pHash bits: closer than this is the same photo, dropped
    cluster_distance: int = 6  # pHash bits: closer than this is a near duplicate, kept together
    test_fraction: float = 0.15
    val_fraction: float = 0.15
    cv_folds: int = 0  # 0: no cross-validation
    balance_to: int = 0  # offline balancing: 0 off; else copies per class in training
    # which sources' mask_boxes are blanked: "none" (photos as the app receives them), "own" (each
    # source's own boxes) or "all" (every source's boxes in every photo)
    blank_boxes: str = "none"


@dataclass
class ModelSettings:
    """The network: backbone, input size, head and what it is trained to name."""

    backbone: str = "mobilenet_v2"  # a name of training.model.backbones.BACKBONES, or two joined: "a+b"
    alpha: float = 1.0
    image_size: int = 224
    # None (random), one source for a single backbone, or backbone -> source; a source is a `.npy`
    # folder, a Keras weights file, "keras" (downloaded) or "default" (the registry's)
    imagenet_weights: str | dict | None = "${SHARED}/weights/mobilenet_v2_1.0_224_imagenet"
    dropout: float = 0.2
    feature_layers: list[str] = field(default_factory=list)  # backbone layers pooled into the features; [] the CAM layer
    fine_labels: bool = False  # train on the sources' fine-grained conditions, summed to the classes


@dataclass
class AugmentSettings:
    """Online augmentation strength (0 turns each off): stage 1's Keras layers use flip to brightness;
    the fine-tune (training.model.augmentation_tf) uses flip (with quarter turns), contrast, brightness and the rest."""

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


@dataclass
class TrainingSettings:
    """Stage 1 (the head) and stage 2 (the fine-tune of the backbone's last layers)."""

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


@dataclass
class EvaluationSettings:
    """What the evaluation measures and the thresholds it sets (evaluate, calibrate, ablate, explanations)."""

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
    # ablate: variant name -> the settings it changes, by section as in a config file (training/steps/ablate.py)
    ablations: dict[str, dict] = field(default_factory=lambda: {
        "as configured": {},
        "image size 288": {"model": {"image_size": 288}},
        "image size 352": {"model": {"image_size": 352}},
        "no label smoothing": {"training": {"label_smoothing": 0.0}},
        "no class weights": {"training": {"class_weights": False}},
        "test-time mirroring": {"evaluation": {"tta": True}},
        "4 augmented copies per photo": {"training": {"head_augmented_copies": 4}},
    })


@dataclass
class PublishSettings:
    """Where the model goes: the Hub, the app's bundled copy, the project's card (export, publish)."""

    model_name: str = "skin-condition-classifier"
    hub_repo: str | None = None  # "org/name"; publish uploads there unless --dry-run
    examples_dir: str | None = None  # photos (redistributable!) shipped in the model folder
    bundle_dir: str | None = None  # also copy the model folder here (the app's default_model/)
    card_path: str | None = None  # and the card here (the project's model_card.md)


SECTIONS = {"data": DataSettings, "model": ModelSettings, "augment": AugmentSettings, "training": TrainingSettings,
            "evaluation": EvaluationSettings, "publish": PublishSettings}
# The sections that change the weights: an interrupted fine-tune resumes whatever the others say
# (training.model.finetune), and every setting of these must match.
WEIGHT_SECTIONS = ("data", "model", "augment", "training")


@dataclass
class ExperimentConfig:
    """A run's folder and seed, and its settings by section; each step reads the sections it needs."""

    output_dir: str = "runs/experiment"
    seed: int = 1337
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "ExperimentConfig":
        """Read a config file; overrides are top-level settings or section -> {setting: value}, and a
        None leaves the file's value. An unknown or misspelled key is named, with the keys that exist."""
        overrides = {key: {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
                     for key, value in overrides.items() if value is not None}
        return cls.from_dict(_merged(_read(Path(path)), overrides), str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "ExperimentConfig":
        """A config from its JSON form (what `save` writes), checked."""
        _check_keys(data, cls, where)
        sections = {}
        for name, kind in SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{where}: {name} must be an object of settings, not {values!r}.")
            _check_keys(values, kind, f"{where}, {name}")
            values = dict(values)
            if kind is DataSettings:
                for i, source in enumerate(values.get("sources", [])):
                    _check_keys(source, Source, f"{where}, data.sources[{i}]")
                values["sources"] = [Source(**s) for s in values.get("sources", [])]
            sections[name] = kind(**values)
        config = cls(**{**data, **sections})
        config._check(where)
        return config

    def changed(self, **sections: dict) -> "ExperimentConfig":
        """This config with some settings changed, written as in a config file: a top-level setting's
        value, or section -> {setting: value}."""
        return self.from_dict(_merged(self.as_dict(), sections), "the changed config")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def weights_fingerprint(self) -> dict:
        """The settings that change the weights (the seed and WEIGHT_SECTIONS), in their JSON form."""
        values = self.as_dict()
        return json.loads(json.dumps({"seed": self.seed} | {name: values[name] for name in WEIGHT_SECTIONS}))

    def save(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "config.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def _check(self, where: str) -> None:
        evaluation = self.evaluation
        missing = [name for name in evaluation.skin_readout_folders if name not in evaluation.ood_folders]
        if missing:
            raise ValueError(f"{where}: skin_readout_folders names {', '.join(map(repr, missing))}, which is not one "
                             f"of ood_folders ({', '.join(evaluation.ood_folders) or 'none'}).")
        if self.data.blank_boxes not in BLANK_BOXES:
            raise ValueError(f"{where}: blank_boxes {self.data.blank_boxes!r} is not one of {', '.join(BLANK_BOXES)}.")
        if self.model.fine_labels and not self.training.head_on_features:
            raise ValueError(f"{where}: fine_labels needs head_on_features (the fine-grained head is trained on "
                             "cached features); set training.head_on_features to true or model.fine_labels to false.")


def each_score_coverage(other_condition_coverage: float) -> float:
    """What each of the two "another condition" scores keeps of validation photos of ours: each takes
    half of what other_condition_coverage leaves out."""
    return 1 - (1 - other_condition_coverage) / 2


def _read(path: Path) -> dict:
    """A config file's keys; with "extends" (a file named relative to this one), that file's keys
    updated by these, so a variant says only how it differs."""
    data = json.loads(path.read_text(encoding="utf-8"))
    base = data.pop("extends", None)
    return data if base is None else _merged(_read(path.parent / base), data)


def _merged(base: dict, changes: dict) -> dict:
    """`base` with `changes`: a section's settings are updated one by one, any other value is replaced whole."""
    return base | {key: base.get(key, {}) | value if key in SECTIONS and isinstance(value, dict) else value
                   for key, value in changes.items()}


def _check_keys(data: dict, kind: type, where: str) -> None:
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown setting {', '.join(_hint(key, names) for key in unknown)}. "
                         f"Settings: {', '.join(names)}.")
    missing = [f.name for f in dataclasses.fields(kind)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data]
    if missing:
        raise ValueError(f"{where}: missing setting {', '.join(missing)}.")


def _hint(key: str, names: list[str]) -> str:
    """An unknown key, with the section it belongs in or the name it is closest to."""
    home = [section for section, kind in SECTIONS.items() if key in {f.name for f in dataclasses.fields(kind)}]
    if home:
        return f"{key!r} (it belongs in the {home[0]!r} section)"
    close = difflib.get_close_matches(key, names, 1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def expand(path: str | None) -> str | None:
    """Expand `${SHARED}` (SKIN_SHARED_DIR, default ../shared beside the project) and `~`."""
    if path is None:
        return None
    shared = os.environ.get("SKIN_SHARED_DIR", str(Path(__file__).resolve().parent.parent.parent / "shared"))
    return os.path.expanduser(path.replace("${SHARED}", shared))

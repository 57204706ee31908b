"""Does the model look at a watermark? The share of the Grad-CAM map that falls inside the
blanked boxes, on test photos of the sources that carry one, with the mark visible and blanked."""

import keras
import numpy as np

from explain.classifier import Classifier
from explain.images import fit_to_model
from explain.model import ModelSource, loaded_model
from explain.overlay import upsample
from training.common import model_config
from training.config import ExperimentConfig
from training.data import blank_boxes, box_mask, read_photo


def watermark_check(config: ExperimentConfig, model: keras.Model, names: list[str],
                    test_rows: list[dict]) -> dict | None:
    marked = {s.name for s in config.sources if s.mask_boxes}
    rows = [r for r in test_rows if r["source"] in marked]
    if not rows:
        return None
    boxes = [box for s in config.sources for box in s.mask_boxes]
    inside = box_mask(config.image_size, boxes)
    classifier = Classifier(loaded_model(model, names, model_config(config), ModelSource("memory", str(config.out))))
    shares = {"visible": [], "blanked": []}
    for row in rows:
        visible = fit_to_model(read_photo(row["path"]), config.image_size)
        for key, pixels in (("visible", visible), ("blanked", blank_boxes(visible.copy(), boxes))):
            # the coarse map, as the shipped card's figure was measured
            cam = upsample(classifier.explain_pixels(pixels[None], resolution="coarse").cam,
                           (config.image_size, config.image_size))
            shares[key].append(float(cam[inside].sum() / max(cam.sum(), 1e-9)))
    return {"n": len(rows), "box_area_share": float(inside.mean()),
            "cam_share_logo_visible": float(np.mean(shares["visible"])),
            "cam_share_blanked": float(np.mean(shares["blanked"]))}

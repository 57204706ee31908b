"""Does the model read the logo? Test photos of the libraries that carry one, scored as served, with the
logo box removed (as a visitor's photo is: no logo) and with a box of the same size removed elsewhere
(the control): top-1 and top-3 of each, how often each removal changes the top class, and the share
of the default heatmap inside the logo box against the box's share of the photo."""

import numpy as np

from explain.classifier import Classifier
from explain.images import fit_to_model
from explain.overlay import upsample
from training.data.logo import control_box, logo_box, marked_sources, remove_logo
from training.data.photos import box_mask, read_photo
from training.evaluation import metrics

VIEWS = ("as served", "logo removed", "control removed")


def logo_views(pixels: np.ndarray, box: list[float]) -> dict[str, np.ndarray]:
    """A photo's three views (uint8 model input): as served, its logo box removed, the control box removed."""
    return dict(zip(VIEWS, (pixels, remove_logo(pixels, box), remove_logo(pixels, control_box(box)))))


def logo_check(classifier: Classifier, sources, rows: list[dict]) -> dict | None:
    """The logo study on `rows` (a split's rows of the model's classes) through the app's own classifier;
    None where no source is marked or no row is of a marked library."""
    box = logo_box(sources)
    marked = marked_sources(sources)
    rows = [r for r in rows if r["source"] in marked and r["target_class"] in classifier.labels]
    if box is None or not rows:
        return None
    size = classifier.config.image_size
    probs = {view: [] for view in VIEWS}
    shares = []
    inside = box_mask(size, [box])
    for row in rows:
        views = logo_views(fit_to_model(read_photo(row["path"]), size).astype(np.uint8), box)
        explanation = classifier.explain_pixels(views["as served"][None].astype(np.float32))  # the default map
        removed = classifier.probabilities(np.stack([views[view] for view in VIEWS[1:]]))
        for view, p in zip(VIEWS, [explanation.prediction.probabilities, *removed]):
            probs[view].append(p)
        cam = upsample(explanation.cam, (size, size))
        shares.append(float(cam[inside].sum() / max(cam.sum(), 1e-9)))
    labels = np.array([classifier.labels.index(r["target_class"]) for r in rows])
    probs = {view: np.array(p) for view, p in probs.items()}
    served = probs["as served"].argmax(axis=1)
    return {
        "n": len(rows), "box": box, "sources": sorted({r["source"] for r in rows}),
        "top1": {view: metrics.top_k_accuracy(p, labels, 1) for view, p in probs.items()},
        "top3": {view: metrics.top_k_accuracy(p, labels, 3) for view, p in probs.items()},
        "top_class_changed": {view: float(np.mean(probs[view].argmax(axis=1) != served)) for view in VIEWS[1:]},
        "cam_share_in_box": float(np.mean(shares)), "box_area_share": float(inside.mean()),
    }

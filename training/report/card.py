"""The model card, generated from the evaluation report: every figure in it is measured.

Its `## Disclaimer` section is what the app shows above every answer
(`explain.card.DISCLAIMER_HEADING`).
"""

import datetime
import re
from pathlib import Path

from explain.cams import DEFAULT_METHOD
from explain.card import DISCLAIMER_HEADING, EXPLANATIONS_HEADING, FAILS, TRUST_HEADING
from explain.classifier import DEFAULT_RESOLUTION
from explain.model import CARD_FILE
from explain.verdicts import KINDS
from training.config import ExperimentConfig, each_score_coverage
from training.model.backbones import imagenet_sources, parts, unfrozen_layers

SANITY_THRESHOLD = 0.5  # a map whose rank correlation with its randomised-model map stays above this fails

DATA_LICENCES = {
    "sd198": ("SD-198 (Sun et al., ECCV 2016), clinical photos", "research and academic use only"),
    "dermnetnz": ("DermNet NZ image library (dermnetnz.org), clinical photos, watermarked",
                  "CC BY-NC-ND; credit: DermNet, dermnetnz.org"),
    "dermnetnz-other": ("DermNet NZ, photos of 204 conditions outside the original classes: its six melanocytic "
                        "naevus conditions train the Naevus class; the other 198 are held out whole and measure the "
                        "\"another condition\" verdict", "CC BY-NC-ND; credit: DermNet, dermnetnz.org"),
    "pad-ufes": ("PAD-UFES-20 (Pacheco et al., Data in Brief 2020), smartphone photos of lesions, grouped by "
                 "patient; its naevi (moles) train the Naevus class",
                 "CC BY 4.0; credit: PAD-UFES-20, Pacheco et al. 2020"),
}


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f}% ± {100 * stat['std']:.1f}"


def front_matter(config: ExperimentConfig, report: dict) -> str:
    test = report["test"]
    results = [("accuracy", "Top-1 accuracy", test["accuracy"]), ("top_3_accuracy", "Top-3 accuracy",
               test.get("top3_accuracy")), ("f1", "Macro F1", test["macro_f1"])]
    metrics = "\n".join(f"          - type: {t}\n            name: {n} (held-out test)\n            value: {v:.4f}"
                        for t, n, v in results if v is not None)
    return f"""---
license: other
license_name: research-non-commercial
library_name: keras
pipeline_tag: image-classification
tags:
  - dermatology
  - grad-cam
  - medical-imaging
  - not-for-diagnosis
model-index:
  - name: {config.publish.model_name}
    results:
      - task:
          type: image-classification
        dataset:
          name: {" + ".join(s.name for s in config.data.sources)} (grouped held-out test split)
          type: custom
        metrics:
{metrics}
---
"""


def disclaimer(names: list[str], photos: int, sources: int) -> str:
    libraries = "one image library" if sources == 1 else f"{sources} medical image libraries"
    return f"""## {DISCLAIMER_HEADING}
**This is not a diagnosis.** This is a research demo: a computer program that guesses which of
{len(names)} skin conditions ({", ".join(n.replace("_", " ") for n in names)}) a photo looks most like.
It is often wrong, and it cannot tell you that your skin is healthy. It learned from {photos:,}
photos from {libraries}; it has not been tested on every skin tone, body site or camera. Most skin
problems are not on that list: it tries to say so when a photo looks like another condition, but it
misses many, and then names one of its conditions for something else entirely. The coloured overlay
shows which parts of the photo drove the guess, not where a disease is. **If a skin problem worries you, is changing, bleeding, painful or not healing,
see a doctor or dermatologist.** In an emergency, call your local emergency number.
"""


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def per_class_cell(r: dict | None) -> str:
    if not r or not r["support"]:
        return "no photos"
    return f"F1 {pct(r['f1'])}, recall {pct(r['recall'])} (n={r['support']})"


def put_section(markdown: str, heading: str, body: str) -> str:
    """Replace the `## heading` section's body, or add the section at the end."""
    section = f"## {heading}\n{body.strip()}\n"
    match = re.search(rf"^## {re.escape(heading)}\s*$", markdown, flags=re.MULTILINE)
    if not match:
        return markdown.rstrip("\n") + "\n\n" + section
    following = re.search(r"^#{1,2}\s", markdown[match.end():], flags=re.MULTILINE)
    end = match.end() + following.start() if following else len(markdown)
    return markdown[: match.start()] + section + ("\n" + markdown[end:] if following else "")


def sanity_passes(row: dict) -> bool:
    return row["rho_random_top"] < SANITY_THRESHOLD and row["rho_other_class"] < SANITY_THRESHOLD


def default_map(summary: dict) -> dict:
    """The summary row of the map the app shows by default (the default method and resolution)."""
    table = summary["table"]
    return table.get(f"{DEFAULT_METHOD} | {DEFAULT_RESOLUTION}") or table[f"{DEFAULT_METHOD} | coarse"]


def trust_section(summary: dict) -> str:
    """The short section the app shows under the heatmap (`explain.card.TRUST_HEADING`), in the page's words."""
    row = default_map(summary)
    best = max(summary["table"].values(), key=lambda r: r["beats_random_at_20"])
    text = (f"Measured on {summary['photos']} held-out test photos: hiding the 20% of the photo that the default "
            f"map ({row['method']}, {row['squares']}) marks most lowered the answer's probability more than hiding a "
            f"random 20% on {pct(row['beats_random_at_20'])} of them")
    if best is not row:
        text += f"; {best['method']} at {best['squares']} does so on {pct(best['beats_random_at_20'])}" + (
            "" if sanity_passes(best) else ", but fails the sanity checks (its maps hardly depend on the class), so it "
                                           "is not the default")
    text += (". Read a heatmap as a hint of what drove the score, checked by the sentence under it for your "
             "photo; it is not an outline of a lesion, and on many photos it says little more than chance.")
    if row["hottest_on_edge"] > row["edge_cells"]:
        text += (f" The map leans to the photo's edges: its hottest square is on the outer ring on "
                 f"{pct(row['hottest_on_edge'])} of those photos, where the ring is {pct(row['edge_cells'])} of the "
                 f"squares, and on a plain grey photo {pct(row['grey_edge_share'])} of the map falls there. That is "
                 "the network's padding at work, not the photo: a hot edge or corner says little.")
    return text


def explanations_section(summary: dict) -> str:
    """The study's table (`python -m training explanations`)."""
    rows = [[r["method"], r["grid"], f"{r['deletion']:.3f} ({r['random_deletion']:.3f})",
             f"{r['insertion']:.3f} ({r['random_insertion']:.3f})", pct(r["beats_random_at_20"]),
             f"{r['rho_random_top']:.2f}", f"{r['rho_other_class']:.2f}", "passes" if sanity_passes(r) else FAILS,
             f"{pct(r['hottest_on_edge'])} ({pct(r['edge_cells'])})", pct(r["grey_edge_share"])]
            for r in summary["table"].values()]
    return "\n".join([
        f"Measured by `python -m training explanations` on {summary['photos']} held-out test photos, each as the app "
        "sees it. Deletion: the mean probability of the explained (top) class as the photo is hidden in the map's "
        "order (5% to 100%, hidden pixels blurred; lower is better); insertion: as it is shown back (higher is "
        "better); in brackets the same for a random mask of 16x16-pixel blocks. \"Beats random\": the share of "
        "photos on which hiding the map's top 20% lowered the class more than hiding a random 20%. "
        "Sanity (Adebayo et al. 2018): Spearman correlation of each map with the same map after re-initialising "
        f"the model's `logits` layer, and with the map of the second most likely class; a method passes when both "
        f"stay below {SANITY_THRESHOLD}. Edge: the share of photos whose hottest cell is on the map's outer ring "
        "(in brackets the ring's share of the cells), and the share of a plain grey photo's map on that ring: "
        "border effects of the network's zero padding, since a grey photo shows nothing.\n",
        table(["method", "map", "deletion (random)", "insertion (random)", "beats random at 20%",
               "rho vs random top", "rho vs other class", "sanity", "hottest on the edge (ring)",
               "grey photo on the edge"], rows)])


def ablation_section(ablation: dict | None) -> str:
    """The `ablate` step's table: each setting changed alone, frozen backbone, same grouped CV."""
    if not ablation:
        return ""
    rows = [[name, pm(r["accuracy"]), pm(r["top3_accuracy"]), pm(r["macro_f1"])]
            for name, r in ablation["variants"].items()]
    lines = ["### What each setting is worth (`python -m training ablate`)\n",
             "Each row changes one setting of the configuration above and is scored on the same grouped folds. "
             "To make the comparison affordable on a CPU, rows not marked fine-tuned keep the backbone frozen "
             "and train only the head.\n",
             table(["variant", "top-1", "top-3", "macro-F1"], rows)]
    return "\n".join(lines) + "\n"


def evaluation(report: dict, names: list[str]) -> str:
    test, parts = report["test"], []
    parts.append(f"### Held-out test split ({test['n']} photos, grouped by near-duplicate cluster)\n")
    rows = [["all", test["n"], pct(test["accuracy"]), pct(test.get("top3_accuracy", 0)), pct(test["macro_f1"])]]
    logo = report.get("logo")
    if logo:  # the library's photos as a visitor's are, without the logo: its headline figure
        rows.append([f"{', '.join(logo_sources(report))}, logo removed", logo["n"], pct(logo["top1"]["logo removed"]),
                     pct(logo["top3"]["logo removed"]), ""])
    for source, r in test.get("by_source", {}).items():
        served = " (as served, logo in)" if logo and source in logo_sources(report) else ""
        rows.append([source + served, r["n"], pct(r["accuracy"]), pct(r.get("top3_accuracy", 0)), pct(r["macro_f1"])])
    parts.append(table(["photos", "n", "top-1", "top-3", "macro-F1"], rows))
    cv = report.get("cross_validation")
    if cv:
        parts.append(f"\n### {cv['folds']}-fold cross-validation (stratified, grouped by cluster; mean ± std)\n")
        rows = [["all", pm(cv["accuracy"]), pm(cv["top3_accuracy"]), pm(cv["macro_f1"])]]
        rows += [[s, pm(r["accuracy"]), pm(r["top3_accuracy"]), pm(r["macro_f1"])] for s, r in cv.get("by_source", {}).items()]
        parts.append(table(["photos", "top-1", "top-3", "macro-F1"], rows))
        if "other_condition_auroc" in cv:
            parts.append(f"\nOther conditions held out whole, fold by fold: AUROC of the feature similarity against the "
                         f"fold's in-taxonomy photos {cv['other_condition_auroc']['mean']:.3f} ± "
                         f"{cv['other_condition_auroc']['std']:.3f}.")
    parts.append("\n### Per class (held-out test" + (", and CV F1 and recall" if cv else "") + ")\n")
    rows = []
    for name in names:
        r = test["per_class"][name]
        row = [name, r["support"], pct(r["precision"]), pct(r["recall"]), pct(r["f1"])]
        rows.append(row + ([pm(cv["per_class_f1"][name]), pm(cv["per_class_recall"][name])]
                           if cv and "per_class_recall" in cv else []))
    parts.append(table(["class", "test n", "precision", "recall", "F1"]
                       + (["CV F1", "CV recall"] if cv and "per_class_recall" in cv else []), rows))
    if report.get("cross_source"):
        parts.append("\n### Leave one source out (train on the other libraries, test on this one's photos of the "
                     "classes they know)\n")
        parts.append(table(["train -> test", "n", "top-1", "top-3", "macro-F1"],
                           [[k, r["n"], pct(r["accuracy"]), pct(r.get("top3_accuracy", 0)), pct(r["macro_f1"])]
                            for k, r in report["cross_source"].items()]))
        directions = list(report["cross_source"])
        parts.append("\nPer class (F1, and recall; n = test photos of that class):\n")
        parts.append(table(["class", *directions], [
            [name, *(per_class_cell(report["cross_source"][d]["per_class"].get(name)) for d in directions)]
            for name in names]))
    cal = report["calibration"]
    parts.append(f"\n### Calibration\nTemperature fitted on validation: {cal['temperature']:.2f}. Expected calibration "
                 f"error on test: {cal['test_ece_before']:.3f} before, {cal['test_ece_after']:.3f} after.\n")
    parts.append(verdicts_section(report["abstention"]))
    if logo:
        parts.append("\n### The logo\n" + logo_section(logo))
    ex = report.get("export")
    if ex:
        parts.append("\n### Exports (parity with the Keras model on real test photos)\n")
        parts.append(table(["format", "size", "max abs diff", "top-1 agreement"],
                           [[k, f"{r['size_mb']} MB", f"{r['max_abs_diff']:.1e}", pct(r["top1_agreement"])]
                            for k, r in ex.items() if isinstance(r, dict)]))
    return "\n".join(parts)


NAEVUS_NOTE = """ The Naevus class (moles) is not one of the original 14: it was added because
the naevus is the lesion people photograph most, and a model without a name for it called phone
photos of moles Melanoma or Carcinoma (see "When it does not name a class"). It is trained from
three libraries (PAD-UFES-20's naevi, DermNet NZ's melanocytic naevi, SD-198's naevus spilus)."""


SHORTLIST_HEADING = "The shortlist: how sure the answer is"


def verdicts_section(ab: dict) -> str:
    """The three verdicts: thresholds, what each set of photos gets, each score's AURC and AUROC."""
    th, score, cover = ab["thresholds"], ab["scores"], ab["coverages"]
    said = []
    if th.get("skin") is not None:
        said.append(f"**not a skin photo** when the {score['skin']} is below {th['skin']:.3f} (kept "
                    f"{pct(cover['skin'])} of validation skin photos)")
    if th.get("energy") is not None:
        said.append(f"**another condition** when the {score['energy']} is below {th['energy']:.3f} or the "
                    f"{score['similarity']} below {th['similarity']:.3f} (each keeps "
                    f"{pct(each_score_coverage(cover['other_condition']))} of validation photos of ours)")
    if th.get("top_probability") is not None:
        said.append(f"**unsure** when the {score['top_probability']} is below "
                    f"{th['top_probability']:.3f} (so that {pct(cover['answer'])} of validation photos of ours are "
                    "answered)")
    parts = ["### When it does not name a class\n",
             "Checked in this order, each verdict on its own score, every threshold chosen on validation photos "
             "only: " + "; ".join(said or ["never (no thresholds)"])]
    parts[-1] += (f". On the held-out test split it answers {pct(ab['test_coverage'])} of in-taxonomy photos, "
                  f"{pct(ab['test_accuracy_when_answering'])} of them right (all photos: "
                  f"{pct(ab.get('test_accuracy', float('nan')))}).\n")
    kinds = [k for k in KINDS if any(shares.get(k) for shares in
                                      [ab["test_verdicts"], *(r.get("verdicts", {}) for r in ab["ood"].values())])]
    rows = [["in-taxonomy test photos", "-", *(pct(ab["test_verdicts"][k]) for k in kinds)]]
    rows += [[f"... of which {source}", "-", *(pct(v[k]) for k in kinds)]
             for source, v in ab.get("test_verdicts_by_source", {}).items()]
    rows += [[name, r["n"], *(pct(r.get("verdicts", {}).get(k, 0)) for k in kinds)] for name, r in ab["ood"].items()]
    parts.append(table(["photos", "n", *(f'"{k}"' for k in kinds)], rows))
    if ab.get("risk_coverage"):
        parts.append("\nRisk-coverage on the in-taxonomy test photos (error rate among the photos a score ranks most "
                     "confident, against the share answered; `risk_coverage.png`); AURC, lower is better:\n")
        parts.append(table(["score", "AURC (test)", "AURC (validation: picks the unsure score)"],
                           [[k, f"{r['aurc']:.3f}", f"{ab['validation_aurc'][k]:.3f}"]
                            for k, r in ab["risk_coverage"].items()]))
    scores = list(next(iter(ab["ood"].values()), {}).get("auroc_by_score", {}))
    if scores:
        parts.append("\nHow well each score separates the test split from each set (AUROC):\n")
        parts.append(table(["photos the model must not know", *scores],
                           [[k, *(f"{r['auroc_by_score'][n]:.3f}" for n in scores)] for k, r in ab["ood"].items()]))
    for name, by_source in ab.get("harmful_mistakes", {}).items():
        parts.append(f"\n{name} test photos answered (verdict: an answer) as "
                     f"{' or '.join(next(iter(by_source.values()))['answered_as'])}:\n")
        parts.append(table(["source", "n", "share"], [[s, r["n"], pct(r["share"])] for s, r in by_source.items()]))
    parts.append("\n" + table(["coverage (top probability)", "top-1 accuracy"],
                              [[pct(r["coverage"]), pct(r["accuracy"])] for r in ab["accuracy_at_coverage"]]))
    return "\n".join(parts)


def shortlist_section(sl: dict) -> str:
    """The conformal shortlist: how it was calibrated, and what it held on photos it never saw."""
    m, candidates = sl["measured"], sl["candidates_on_validation"]
    listed = m["listed"]
    text = (f"The page names a class only as part of a list calibrated to hold the right one for {pct(sl['coverage'])} "
            f"of photos like the test photos: a conformal prediction set ({sl['score'].upper()} score, threshold "
            f"{sl['threshold']:.4f}, calibrated with MAPIE on {sl['calibration_photos']} test photos, whole clusters, "
            "that trained and chose nothing; the score is the one with the smallest mean set on validation photos: "
            + ", ".join(f"{k.upper()} {c['mean_size']:.2f}" for k, c in candidates.items())
            + "). One class in the list: \"Most likely: X\"; two or three: \"One of: X, Y or Z\"; more (or none): "
            "the model cannot narrow it down. The list's length says how sure the model is, so no top-probability "
            "threshold is checked (\"unsure\" comes from the list alone); \"not skin\" and \"another condition\" "
            "come first, as in \"When it does not name a class\". Measured on the other "
            f"{m['n']} test photos: the list holds the right class on {pct(m['coverage'])}, mean length "
            f"{m['mean_size']:.2f}; {pct(listed['share'])} of photos get an answer or a list of at most three, which "
            f"holds the right class on {pct(listed['coverage'])} of them (mean length {listed['mean_size']:.2f}).\n\n")
    text += table(["verdict on the measuring half", "share of photos", "right class in what it names"],
                  [[f'"{k}"', pct(share), pct(m["hit_rate"][k]) if k in m["hit_rate"] else ""]
                   for k, share in m["verdicts"].items() if share])
    text += ("\n\nBy library and by class (the guarantee is for photos like the calibration photos as a whole; a "
             "library or class can fall below it, and a camera the model never saw is not covered):\n\n")
    text += table(["photos", "n", "list holds the right class", "mean length"],
                  [[name, r["n"], pct(r["coverage"]), f"{r['mean_size']:.2f}"]
                   for name, r in [*sl["by_source"].items(), *sl["by_class"].items()] if r["n"]])
    left_out = sl.get("library_left_out_of_calibration")
    if left_out:
        text += ("\n\nEach library left out of the calibration, its photos measured against a list calibrated on the "
                 "others' (photos unlike every calibration photo; the model trained on all three libraries, so a "
                 "camera it never saw may do worse still):\n\n")
        text += table(["library left out", "n", "list holds the right class", "mean length",
                       "calibrated with it (above)"],
                      [[name, r["n"], pct(r["coverage"]), f"{r['mean_size']:.2f}", pct(sl["by_source"][name]["coverage"])]
                       for name, r in left_out.items() if r["n"]])
    return text


def logo_sources(report: dict) -> list[str]:
    """The test split's sources whose photos the logo study scored (those of the logo's library)."""
    return [source for source, r in report["test"].get("by_source", {}).items() if source in report["logo"]["sources"]]


LOGO_HEADING = "The logo: what a photo without it gets"


def logo_section(logo: dict) -> str:
    """The logo study's table (training.evaluation.watermark): the photos without the logo are what a
    visitor's photo is like, so their row is the library's headline figure."""
    views = list(logo["top1"])
    changed = logo["top_class_changed"]
    return ("Test photos of the library whose photos carry a logo, scored as served, with the logo's "
            "box blurred past reading (as a visitor's photo is: no logo) and with a box of the same size blurred in "
            f"the opposite corner (the control); {logo['n']} photos.\n\n"
            + table(["photos", "top-1", "top-3", "top class changed"],
                    [[v, pct(logo["top1"][v]), pct(logo["top3"][v]), pct(changed[v]) if v in changed else ""]
                     for v in views])
            + f"\n\nShare of the default heatmap inside the logo box: {pct(logo['cam_share_in_box'])}; the box is "
            f"{pct(logo['box_area_share'])} of the photo.\n")


def watermark_sentence(config: ExperimentConfig) -> str:
    if config.augment.logo_swap:
        return (f"In fine-tuning, each photo's logo box showed a logo with probability {config.augment.logo_swap} "
                "(its own on DermNet NZ photos, one pasted from them on the others) and was blurred otherwise, "
                "whatever the library, so the logo tells nothing; \"The logo\" below measures what it still does.")
    if config.data.blank_boxes == "none":
        return ("Photos were trained on and evaluated as the app receives them: the DermNet NZ watermark was left "
                "as it is (\"The logo\" below measures how much the model reads it).")
    whose = "every photo of every source" if config.data.blank_boxes == "all" else "its own source's photos"
    return (f"The watermark box was blanked in {whose} during training and evaluation, so \"logo present\" "
            "carries no information (the app does not blank it).")


BACKBONES_HEADING = "Backbones"


def backbones_section(config: ExperimentConfig) -> str:
    """Each backbone with where its ImageNet weights come from and their licence (the model is a derived work)."""
    sources = imagenet_sources(config.model)
    rows = [[part.name, part.weights_origin, part.licence] if sources[part.name] else
            [part.name, "none: random initial weights", ""] for part in parts(config.model.backbone)]
    return ("The model contains these networks; where they started from ImageNet weights, it is a derived work of "
            "those weights too:\n\n" + table(["backbone", "ImageNet weights", "licence"], rows))


CROSSVAL_HEADING = "Cross-validation of the fine-tune"
CROSSVAL_ROWS = {"frozen": "frozen (stage 1 only), photos as decoded",
                 "frozen, photos as packed": "frozen, the same photos through WebP",
                 "fine-tuned, photos as packed": "fine-tuned, the same photos through WebP"}


def crossval_section(result: dict) -> str:
    """`python -m training.steps.jax_crossval report`'s result: every photo of the classes held out once, each
    fold fine-tuned on a machine with an accelerator; the frozen model beside it on the same photos."""
    tuned = result["fine-tuned, photos as packed"]
    parity = result["fold0_tensorflow_vs_jax"]
    rows = [[label, pm(result[key]["accuracy"]), pm(result[key]["top3_accuracy"]), pm(result[key]["macro_f1"])]
            for key, label in CROSSVAL_ROWS.items()]
    frozen = result["frozen, photos as packed"].get("by_source", {})
    by_source = [[source, pm(frozen[source]["accuracy"]) if source in frozen else "", pm(r["accuracy"]),
                  pm(r["top3_accuracy"])] for source, r in tuned.get("by_source", {}).items()]
    return (f"{tuned['folds']} folds grouped by near-duplicate cluster and patient, every photo of the classes held out "
            "once; each fold's stage 1 trained by the pipeline, its fine-tune by the same recipe under Keras on JAX "
            "(`python -m training.steps.jax_crossval`), on photos stored as WebP to travel, so the frozen model is "
            "also given on those photos. Mean ± standard deviation over the folds:\n\n"
            + table(["model", "top-1", "top-3", "macro-F1"], rows)
            + ("\n\nBy library, the same photos through WebP:\n\n"
               + table(["library", "frozen top-1", "fine-tuned top-1", "fine-tuned top-3"], by_source)
               if by_source else "")
            + f"\n\nThe first fold's model, saved on JAX, loaded under TensorFlow: the same top class on "
            f"{pct(parity['same_top_class'])} of its held-out photos (largest logit difference "
            f"{parity['max_abs_logit_difference']:.1e}).\n")


def cards_of(config: ExperimentConfig, folder: Path) -> list[Path]:
    """The model folder's card and, when the folder is the bundled one, the repository's copy (card_path)."""
    bundled = config.publish.bundle_dir and folder.resolve() == Path(config.publish.bundle_dir).resolve()
    paths = [folder / CARD_FILE, *([Path(config.publish.card_path)] if bundled and config.publish.card_path else [])]
    return [path for path in paths if path.is_file()]


def training_section(config: ExperimentConfig) -> str:
    model, training, augment = config.model, config.training, config.augment
    features = ", ".join(model.feature_layers) if model.feature_layers else "the last backbone layer"
    text = (f"Input {model.image_size}x{model.image_size}, whole photo resized (bilinear). Features: the average of "
            f"each of {features}, concatenated and standardised. Stage 1: head on the frozen backbone (learning rate "
            f"{training.head_learning_rate}) on "
            + ("the sources' fine-grained conditions, their probabilities summed to the classes" if model.fine_labels
               else "the classes") + ". ")
    if training.finetune_epochs:
        trained = ", ".join(f"the last {n} layers of {name}"
                            for name, n in unfrozen_layers(model.backbone, training.unfreeze_layers).items())
        text += (f"Stage 2: {training.finetune_epochs} epochs of fine-tuning end to end, {trained} "
                 f"trainable (BatchNorm frozen), AdamW (weight decay {training.finetune_weight_decay}) "
                 f"warmed up for {training.finetune_warmup_epochs} epoch(s) to {training.finetune_learning_rate} "
                 f"for the backbone and {training.finetune_head_learning_rate} for the head, then cosine-decayed; the epoch "
                 f"kept is the best on validation top-1. Augmentation: random square crops of "
                 f"{pct(augment.crop_min)}-100% of the side, flips and quarter turns, brightness, contrast, "
                 f"saturation and hue jitter, per-channel gains of up to ±{pct(augment.white_balance)}, JPEG "
                 f"re-compression (quality {augment.jpeg_quality_min}-100) and, with probability {augment.erase}, a "
                 "randomly erased rectangle. ")
    else:
        text += "The backbone stays ImageNet's (frozen). "
    if config.evaluation.other_condition_coverage:
        text += ("Photos of other conditions are held out whole, by condition, to measure the \"another "
                 "condition\" answer; they train nothing but the skin read-out, as skin photos (every way of training the "
                 "classifier on them that was tried learned their photo library instead, see README). ")
    weighted = "on" if training.class_weights else "off"
    return text + (f"Label smoothing {training.label_smoothing}, class weights {weighted}, "
                   f"test-time mirror averaging {'on' if config.evaluation.tta else 'off'}, seed {config.seed}.")


def render_card(config: ExperimentConfig, report: dict, ablation: dict | None = None,
                explanations: dict | None = None) -> str:
    names = report["classes"]
    data_rows = [[s.name, *DATA_LICENCES.get(s.name, (s.root, "see the source"))] for s in config.data.sources]
    counts = report["counts"]
    trained_on = [s for s in config.data.sources if not s.other_conditions]
    card = f"""{front_matter(config, report)}
# {config.publish.model_name}

A {" and ".join(part.name for part in parts(config.model.backbone))} (ImageNet-pretrained{", fine-tuned" if config.training.finetune_epochs else ", frozen"}) classifier of clinical skin photos into {len(names)}
conditions, with Grad-CAM explanations. Generated on {datetime.date.today().isoformat()} by
`python -m training publish` from the evaluation report; every figure below was measured.

{disclaimer(names, sum(counts.values()), len(trained_on))}
## Intended use
A public, educational demo of image classification with visual explanations, and a baseline for
researchers. It shows which of its classes a photo resembles and where the model looked.

## Out-of-scope use
Diagnosis, triage, screening or any clinical decision; reassurance that a lesion is harmless;
use on dermoscopic images, on conditions outside its classes, or by anyone without a clinician.

## Classes
{", ".join(names)}. The original taxonomy also had Skin_Tag and Healthy; no photos of those were
available to train on, so this model does not know them (a healthy-skin photo is an
out-of-distribution input for it, see below).{NAEVUS_NOTE if "Naevus" in names else ""}

## Training data
{table(["source", "what", "licence"], data_rows)}

Photos were deduplicated (exact bytes and perceptual hash), split by original photo with
near-duplicate clusters kept on one side, BEFORE any augmentation: {counts['train']} train,
{counts['val']} validation, {counts['test']} test. {watermark_sentence(config)}
The model inherits the data's licences: research and non-commercial use only.

## Training
{training_section(config)}

## {BACKBONES_HEADING}
{backbones_section(config)}

## Evaluation
{evaluation(report, names)}

{ablation_section(ablation)}
## Limitations
- Small data: {sum(counts.values()):,} photos from {len(trained_on)} source(s); several classes have few photos.
- Each source has its own cameras, framing and populations; the cross-source figures (where
  present) show how much accuracy drops on photos unlike the training set.
- Skin tone, age, sex and body site were not recorded, so fairness across skin types is unmeasured.
- Similar-looking conditions (dermatitis, eczema, psoriasis, tinea) are often confused.
- The heatmaps show what drove the score on a coarse grid (7x7, or 14x14 at the finer setting); they are not
  lesion outlines, and how faithful they are is measured, where it was, in the section below.
"""
    if report.get("shortlist"):
        card = put_section(card, SHORTLIST_HEADING, shortlist_section(report["shortlist"]))
    if explanations:
        card = put_section(card, TRUST_HEADING, trust_section(explanations["summary"]))
        card = put_section(card, EXPLANATIONS_HEADING, explanations_section(explanations["summary"]))
    return card

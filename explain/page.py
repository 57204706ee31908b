"""What the page says: the app's Markdown verdicts and model line, its defaults, and the
functions its events call, turning the service's domain objects into component values.

Gradio-free, so the wording is tested without a browser; `app.py` only wires these to
components. The command line words the same objects as plain text (`explain.__main__`).
"""

from explain.cams import DEFAULT_METHOD, METHODS
from explain.card import TRUST_HEADING, card_section
from explain.classifier import NOT_SKIN, OTHER_CONDITION, UNSURE, Prediction
from explain.faithfulness import Check
from explain.service import Comparison, Service

TOP_CLASS = "Most likely class"  # the "explain which class" choice meaning the top answer
EXAMPLES_CREDIT = ("Clinical examples: Image: DermNet (dermnetnz.org), "
                   "[CC BY-NC-ND 3.0 NZ](https://creativecommons.org/licenses/by-nc-nd/3.0/nz/); sources and "
                   "licences of every example in `examples/README.md`.")
# Methods whose maps failed the sanity checks (Adebayo et al. 2018) on the shipped model and on the
# tests' tiny model: their maps hardly change when the model's top is randomised or another class
# is explained (README, 'Explanations'; tests/test_explanations.py). Labelled wherever the page names them.
FAILS_SANITY = " (fails sanity checks: hardly depends on the class)"
SANITY_NOTES = {"Grad-CAM++": FAILS_SANITY, "LayerCAM": FAILS_SANITY, "Score-CAM": FAILS_SANITY}
DEFAULT_TOP_K = 3
DEFAULT_OPACITY = 0.45  # of the heatmap over the photo, 0..1
NOT_SKIN_WORDS = "This does not look like a photo of skin like the ones this model learned from."
OTHER_CONDITION_WORDS = "This photo is unlike the photos of the 12 conditions this model knows: it may show another condition."
NO_TRUST_NOTE = ("This model's card does not say how faithful its heatmaps are. The sentence under each heatmap "
                 "measures it for your photo: a map worth reading hides more of the answer than a random mask does.")


def verdict(prediction: Prediction) -> str:
    """One Markdown line: the top answer; or "not a skin photo", "another condition" or "unsure
    between A and B", each with the closest guesses (the probabilities and heatmap stay shown)."""
    first, second = _top_two(prediction)
    if prediction.verdict == NOT_SKIN:
        return f"**{NOT_SKIN_WORDS}** Its closest guess would be {first}."
    if prediction.verdict == OTHER_CONDITION:
        return f"**{OTHER_CONDITION_WORDS}** Closest of the 12: {first}. Not a diagnosis."
    if prediction.verdict == UNSURE:
        return f"**Unsure between {first} and {second}.** Not a diagnosis."
    return f"Most likely: **{first}**. Not a diagnosis."


def _top_two(prediction: Prediction) -> list[str]:
    """The two most likely classes as "Name (p%)" (a one-class model names its class twice)."""
    named = [f"{name.replace('_', ' ')} ({p:.0%})" for name, p in prediction.top_k(2).items()]
    return (named * 2)[:2]


def model_status(service: Service) -> str:
    """One Markdown line: which model and revision answer, or why none does."""
    if service.model is None:
        return f"**No model is available.** {service.model_error}"
    model = service.model
    line = f"Model **{model.config.name}** ({len(model.labels)} classes), {model.source.describe()}."
    if service.fallback_reason:
        line += (" The configured model could not be loaded, so the bundled model answers instead: "
                 f"{service.fallback_reason}")
    return line


def trust_note(service: Service) -> str:
    """What the model card measured about its maps, or a plain warning when it says nothing."""
    return card_section(service.model.card if service.model else None, TRUST_HEADING) or NO_TRUST_NOTE


def method_choices() -> list[tuple[str, str]]:
    """(label, value) choices of the CAM method; a method that fails the sanity checks says so."""
    return [(name + SANITY_NOTES.get(name, ""), name) for name in METHODS]


def default_resolution(service: Service) -> str:
    """The map resolution the page starts with (Classifier.default_resolution)."""
    return service.classifier.default_resolution if service.classifier else "coarse"


def resolutions(service: Service) -> list[tuple[str, str]]:
    """(label, value) choices of the map resolution, coarse first."""
    if service.classifier is None:
        return [("coarse", "coarse")]
    return [(service.classifier.grid(name), name) for name in service.classifier.layers]


def sentence(check: Check) -> str:
    """The faithfulness check in one plain sentence, for the line under the heatmap."""
    share, name = f"{check.fraction:.0%}", check.target.replace("_", " ")
    text = (f"Hiding the {share} of the photo the map marks most {_moves(check.probability, check.map_hidden)} "
            f"{name} from {check.probability:.0%} to {check.map_hidden:.0%}; hiding a random {share} "
            f"{_moves(check.probability, check.random_hidden)} it to {check.random_hidden:.0%}.")
    if not check.beats_random:
        text += " On this photo the map does no better than a random mask: do not read much into it."
    return text


def _moves(before: float, after: float) -> str:
    return "drops" if after < before else "raises" if after > before else "leaves"


def predict(service: Service, photo, top_k: int = DEFAULT_TOP_K) -> tuple[dict[str, float], str]:
    """/predict: top-k label data and the verdict."""
    prediction = service.predict(photo)
    return prediction.top_k(int(top_k)), verdict(prediction)


def explain(service: Service, photo, method: str = DEFAULT_METHOD, target: str | None = TOP_CLASS,
            opacity: float = DEFAULT_OPACITY, top_k: int = DEFAULT_TOP_K, resolution: str | None = None):
    """/explain: top-k label data, the overlay image, the verdict naming the explained class, the
    faithfulness sentence and its numbers."""
    explanation, picture, check = service.explain(photo, method, _target(target), opacity=opacity,
                                                  resolution=resolution or default_resolution(service))
    note = (verdict(explanation.prediction)
            + f" The heatmap shows what drove **{explanation.target}** ({explanation.method}).")
    return explanation.prediction.top_k(int(top_k)), picture, note, sentence(check), check.as_dict()


def compare(service: Service, photo, target: str | None = TOP_CLASS, opacity: float = DEFAULT_OPACITY,
            resolution: str | None = None):
    """/compare: a gallery of (overlay, caption), a Markdown table and its numbers."""
    comparison = service.compare(photo, _target(target), opacity=opacity,
                                 resolution=resolution or default_resolution(service))
    return _gallery(comparison), _table(comparison), _numbers(comparison)


def _target(target: str | None) -> str | None:
    return None if target in (None, "", TOP_CLASS) else target


def _gallery(comparison: Comparison) -> list[tuple]:
    items = [(row.overlay, f"{row.explanation.method} of {comparison.target}: deletion area "
              f"{row.deletion.deletion_area:.3f} (random {comparison.random.deletion_area:.3f}), "
              f"{row.seconds * 1000:.0f} ms") for row in comparison.methods]
    return items + [(picture, f"{DEFAULT_METHOD} of {e.target} ({e.prediction.probabilities[e.target_index]:.0%})")
                    for e, picture in comparison.classes]


def _table(comparison: Comparison) -> str:
    lines = [f"**{comparison.target}**, maps at {comparison.grid}. Deletion area: the class's probability, "
             "averaged as ever more of the photo is hidden in the map's order; lower than the random mask's "
             "means the map found what the answer rests on.", "",
             "| method | deletion area | random mask | beats random | time |", "|---|---|---|---|---|"]
    for row in comparison.methods:
        area, baseline = row.deletion.deletion_area, comparison.random.deletion_area
        lines.append(f"| {row.explanation.method}{SANITY_NOTES.get(row.explanation.method, '')} | {area:.3f} | "
                     f"{baseline:.3f} | {'yes' if area < baseline else 'no'} | {row.seconds * 1000:.0f} ms |")
    return "\n".join(lines)


def _numbers(comparison: Comparison) -> dict:
    return {"target": comparison.target, "grid": comparison.grid, "random": comparison.random.as_dict(),
            "methods": {row.explanation.method: {"seconds": row.seconds, **row.deletion.as_dict()}
                        for row in comparison.methods},
            "classes": [e.target for e, _ in comparison.classes]}

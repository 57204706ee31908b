"""What the page says: the verdict and the model line as data (what the API returns) and in the
page's Markdown, its defaults, and the functions its events call, turning the service's domain
objects into component values.

Gradio-free, so the wording is tested without a browser; `app.py` only wires these to
components. The command line prints the same verdict text (`explain.__main__`).
"""

import math
import re

from explain.cams import DEFAULT_METHOD, METHODS
from explain.card import TRUST_HEADING, card_section
from explain.classifier import Explanation, Prediction
from explain.faithfulness import Check
from explain.service import Comparison, Service
from explain.verdicts import ANSWER, NOT_SKIN, OTHER_CONDITION, UNSURE

TOP_CLASS = "Most likely class"  # the "explain which class" choice meaning the top answer
EXAMPLES_CREDIT = ("Clinical examples: Image: DermNet (dermnetnz.org), "
                   "[CC BY-NC-ND 3.0 NZ](https://creativecommons.org/licenses/by-nc-nd/3.0/nz/); sources and "
                   "licences of every example in `examples/README.md`.")
# Methods whose maps failed the sanity checks (Adebayo et al. 2018) on the shipped model and on the
# tests' tiny model: their maps hardly change when the model's top is randomised or another class
# is explained (docs/explanations.md; tests/test_explanations.py). Labelled wherever the page names them.
FAILS_SANITY = " (fails sanity checks: hardly depends on the class)"
SANITY_NOTES = {"Grad-CAM++": FAILS_SANITY, "LayerCAM": FAILS_SANITY, "Score-CAM": FAILS_SANITY}
DEFAULT_TOP_K = 3
DEFAULT_OPACITY = 0.45  # of the heatmap over the photo, 0..1
NOT_SKIN_WORDS = "This does not look like a photo of skin like the ones this model learned from."
# {n}: how many conditions the model knows, from its labels
OTHER_CONDITION_WORDS = ("This photo is unlike the photos of the {n} conditions this model knows: "
                         "it may show another condition.")
HEATMAP_LEGEND = ("**Reading the heatmap:** the warmer the colour (blue, then green, yellow, red), the more that part "
                  "of the photo raised the explained condition's score; parts left untinted did not. It shows where "
                  "the model looked, not where a disease is.")
NO_TRUST_NOTE = ("This model's card does not say how faithful its heatmaps are. The sentence under each heatmap "
                 "measures it for your photo: a map worth reading hides more of the answer than a random mask does.")


# The result box's big type when the verdict is not an answer: never a bare class name then.
HEADLINES = {NOT_SKIN: "Not a photo of skin?", OTHER_CONDITION: "Perhaps another condition", UNSURE: "Unsure"}


def disclaimer_summary(disclaimer: str) -> str:
    """The disclaimer's bold sentences: what fits a phone's first screen (the whole text is one tap away)."""
    bold = re.findall(r"\*\*.+?\*\*", disclaimer, flags=re.DOTALL)
    return " ".join(bold) if bold else disclaimer


def headline(prediction: Prediction) -> str:
    """The one headline of an answer: the top class only when the verdict is an answer."""
    if prediction.verdict == ANSWER:
        return next(iter(prediction.top_k(1)))
    return HEADLINES[prediction.verdict]


def label_value(prediction: Prediction, top_k: int) -> dict:
    """The result box's value: its headline and the top-k classes with their probabilities."""
    return {"headline": headline(prediction), "confidences": prediction.top_k(int(top_k))}


def verdict(prediction: Prediction, explanation: Explanation | None = None) -> dict:
    """The verdict as data, what /predict and /explain return: its kind (explain.verdicts.KINDS), the
    classes it names (the answer; the two it is unsure between; the closest guess otherwise), each
    verdict's score and threshold, and the sentence in plain text; with `explanation`, which class
    and method the heatmap shows."""
    kind, (first, second) = prediction.verdict, _top_two(prediction)
    classes = list(prediction.top_k(2 if kind == UNSURE else 1))
    if kind == NOT_SKIN:
        summary, rest = NOT_SKIN_WORDS, f"Its closest guess would be {first}."
    elif kind == OTHER_CONDITION:
        n = len(prediction.labels)
        summary, rest = OTHER_CONDITION_WORDS.format(n=n), f"Closest of the {n}: {first}. Not a diagnosis."
    elif kind == UNSURE:
        summary, rest = f"Unsure between {first} and {second}.", "Not a diagnosis."
    else:
        summary, rest = f"Most likely: {first}.", "Not a diagnosis."
    data = {"kind": kind, "classes": classes, "summary": summary, "text": f"{summary} {rest}",
            "scores": {name: rounded(value) if math.isfinite(value) else None  # no skin read-out: None
                       for name, value in prediction.scores.items()},
            "thresholds": prediction.thresholds}
    if explanation is not None:
        data["heatmap"] = {"class": explanation.target, "method": explanation.method}
        data["text"] += f" The heatmap shows what drove {explanation.target} ({explanation.method})."
    return data


def verdict_markdown(data: dict | None) -> str:
    """The page's verdict line, from the verdict's data: its first sentence in bold."""
    if not data:
        return ""
    return f"**{data['summary']}**{data['text'][len(data['summary']):]}"


def _top_two(prediction: Prediction) -> list[str]:
    """The two most likely classes as "Name (p%)" (a one-class model names its class twice)."""
    named = [f"{name.replace('_', ' ')} ({p:.0%})" for name, p in prediction.top_k(2).items()]
    return (named * 2)[:2]


def model_info(service: Service) -> dict:
    """/model_info: which model and revision answer (or why none does), as data with a plain sentence."""
    if service.model is None:
        return {"available": False, "error": str(service.model_error),
                "text": f"No model is available. {service.model_error}"}
    model = service.model
    source = model.source
    text = f"Model {model.config.name} ({len(model.labels)} classes), {source.describe()}."
    if service.fallback_reason:
        text += (" The configured model could not be loaded, so the bundled model answers instead: "
                 f"{service.fallback_reason}")
    return {"available": True, "name": model.config.name, "classes": model.labels,
            "source": {"kind": source.kind, "location": source.location, "revision": source.revision},
            "fallback_reason": service.fallback_reason, "text": text}


def model_status(info: dict | None) -> str:
    """The page's model line, from /model_info's data: the model's name in bold, or why none answers."""
    if not info:
        return ""
    if not info["available"]:
        return f"**No model is available.** {info['error']}"
    return info["text"].replace(info["name"], f"**{info['name']}**", 1)


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
    return [(service.classifier.squares(name), name) for name in service.classifier.layers]


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


def predict_outputs(service: Service, photo, top_k: int = DEFAULT_TOP_K) -> tuple[dict, dict]:
    """/predict: the headline with the top-k classes, and the verdict's data."""
    prediction = service.predict(photo)
    return label_value(prediction, top_k), verdict(prediction)


def explain_outputs(service: Service, photo, method: str = DEFAULT_METHOD, target: str | None = TOP_CLASS,
                    opacity: float = DEFAULT_OPACITY, top_k: int = DEFAULT_TOP_K, resolution: str | None = None):
    """/explain: the headline with the top-k classes, the overlay image, the verdict's data (naming the
    explained class), the faithfulness sentence and its numbers."""
    explained = service.explain_photo(photo, method, _target(target), opacity=opacity, resolution=resolution)
    explanation, check = explained.explanation, explained.check
    return (label_value(explanation.prediction, top_k), explained.overlay, verdict(explanation.prediction, explanation),
            sentence(check), rounded(check.as_dict()))


def compare_outputs(service: Service, photo, target: str | None = TOP_CLASS, opacity: float = DEFAULT_OPACITY,
                    resolution: str | None = None):
    """/compare: a gallery of (overlay, caption) and the numbers (the page draws its table from them)."""
    comparison = service.compare(photo, _target(target), opacity=opacity, resolution=resolution)
    return _gallery(comparison), rounded(_numbers(comparison, service.classifier.squares(comparison.resolution)))


def rounded(numbers, digits: int = 4):
    """The numbers a person reads on the page, to `digits` significant digits (not 16)."""
    if isinstance(numbers, float):
        return float(f"{numbers:.{digits}g}")
    if isinstance(numbers, dict):
        return {key: rounded(value, digits) for key, value in numbers.items()}
    if isinstance(numbers, (list, tuple)):
        return [rounded(value, digits) for value in numbers]
    return numbers


def _target(target: str | None) -> str | None:
    return None if target in (None, "", TOP_CLASS) else target


def _gallery(comparison: Comparison) -> list[tuple]:
    items = [(row.overlay, f"{row.explanation.method}: area {row.deletion.deletion_area:.2f} "
              f"(random {comparison.random.deletion_area:.2f})") for row in comparison.methods]
    return items + [(picture, f"{DEFAULT_METHOD} of {e.target} ({e.prediction.probabilities[e.target_index]:.0%})")
                    for e, picture in comparison.classes]


def compare_table(numbers: dict | None) -> str:
    """The page's Markdown table of a Compare, from /compare's numbers."""
    if not numbers:
        return ""
    lines = [f"**{numbers['target']}**, maps of {numbers['squares']}. Deletion area: the class's probability, "
             "averaged as ever more of the photo is hidden in the map's order; lower than the random mask's "
             "means the map found what the answer rests on.", "",
             "| method | deletion area | random | beats random | time |", "|---|---|---|---|---|"]
    baseline = numbers["random"]["deletion_area"]
    for method, curve in numbers["methods"].items():
        area = curve["deletion_area"]
        lines.append(f"| {_starred(method)} | {area:.3f} | {baseline:.3f} | {'yes' if area < baseline else 'no'} | "
                     f"{curve['seconds'] * 1000:.0f} ms |")
    if any(method in SANITY_NOTES for method in numbers["methods"]):
        lines += ["", f"\\* {FAILS_SANITY.strip(' ()')}."]
    return "\n".join(lines)


def _starred(method: str) -> str:
    """A method's name in the table, starred when it fails the sanity checks (the note below the table)."""
    return method + ("\\*" if method in SANITY_NOTES else "")


def _numbers(comparison: Comparison, squares: str) -> dict:
    return {"target": comparison.target, "grid": comparison.grid, "squares": squares,
            "random": comparison.random.as_dict(),
            "methods": {row.explanation.method: {"seconds": row.seconds, **row.deletion.as_dict()}
                        for row in comparison.methods},
            "classes": [e.target for e, _ in comparison.classes]}

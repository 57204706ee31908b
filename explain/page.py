"""What the page says: the verdict and the model line as data (what the API returns) and in the
page's Markdown, its defaults, and the functions its events call, turning the service's domain
objects into component values.

Gradio-free, so the wording is tested without a browser; `app.py` only wires these to
components. The command line prints the same verdict text (`explain.__main__`).
"""

import math
import re
import threading
from collections import OrderedDict

from explain.cams import DEFAULT_METHOD, METHODS
from explain.card import TRUST_HEADING, card_section
from explain.classifier import Explanation, Prediction
from explain.faithfulness import Check
from explain.service import Comparison, Service
from explain.verdicts import ANSWER, LONGEST_LIST, SHORTLIST, UNSURE, VERDICTS

TOP_CLASS = "Most likely class"  # the "explain which class" choice meaning the top answer
EXAMPLES_CREDIT = ("Clinical examples: Image: DermNet (dermnetnz.org), "
                   "[CC BY-NC-ND 3.0 NZ](https://creativecommons.org/licenses/by-nc-nd/3.0/nz/). Phone photos: "
                   "PAD-UFES-20, Pacheco et al. 2020, [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/). "
                   "Sources and licences of every example in `examples/README.md`. The clinical examples carry "
                   "DermNet's logo, which a model trained on its photos can learn to read: where a heatmap lights up "
                   "the logo, the answer leans on the library's mark, not on the skin. Your own photo has no logo.")
# Labelled wherever the page names a method whose maps failed the sanity checks (Adebayo et al. 2018)
# in the model card's own study (explain.card.failing_sanity): they hardly change when the model's top
# is randomised or another class is explained (docs/explanations.md).
FAILS_SANITY = " (fails sanity checks: hardly depends on the class)"
DEFAULT_TOP_K = 3
DEFAULT_OPACITY = 0.45  # of the heatmap over the photo, 0..1
# how a measured hit rate reads under the kinds of answer the shortlist gives (ModelConfig.shortlist)
HIT_RATE_WORDS = {
    SHORTLIST: "Lists like this held the right condition for {share} of held-out test photos (photos like those; "
               "a camera the model never saw may do worse).",
    ANSWER: "Single answers like this were right for {share} of held-out test photos (photos like those; a camera "
            "the model never saw may do worse).",
}
HEATMAP_LEGEND = ("**Reading the heatmap:** the warmer the colour (blue, then green, yellow, red), the more that part "
                  "of the photo raised the explained condition's score; parts left untinted did not. It shows where "
                  "the model looked, not where a disease is.")
NO_TRUST_NOTE = ("This model's card does not say how faithful its heatmaps are. The sentence under each heatmap "
                 "measures it for your photo: a map worth reading hides more of the answer than a random mask does.")


# what a visitor is told when something failed on our side (never the exception's own words)
GENERIC_ERROR = "Something went wrong on our side; please try again."
# The answer's components (label, heatmap, verdict data, faithfulness sentence, its numbers), empty
EMPTY_ANSWER = (None, None, None, "", None)


class Refusals:
    """Each page's last refusal, kept until that page shows it: the toast fades, the reason stays on
    the page beside an empty answer until the next photo. Bounded, oldest forgotten first: an API
    caller's refusals, which no page asks for, cannot pile up."""

    def __init__(self, size: int = 256):
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def record(self, session: str | None, reason: str) -> None:
        with self._lock:
            self._reasons[session or ""] = reason
            self._reasons.move_to_end(session or "")
            while len(self._reasons) > self._size:
                self._reasons.popitem(last=False)

    def take(self, session: str | None) -> str:
        """The page's line for its last refusal, in bold where it begins; forgotten once taken."""
        with self._lock:
            reason = self._reasons.pop(session or "", GENERIC_ERROR)
        return f"**Not analysed.** {reason}"


def cleared() -> tuple:
    """A new photo's first state: no verdict line, no answer, no Compare (nothing stale stays on screen)."""
    return ("", *EMPTY_ANSWER, None, "", None)


def disclaimer_summary(disclaimer: str) -> str:
    """The disclaimer's bold sentences: what fits a phone's first screen (the whole text is one tap away)."""
    bold = re.findall(r"\*\*.+?\*\*", disclaimer, flags=re.DOTALL)
    return " ".join(bold) if bold else disclaimer


def named_classes(prediction: Prediction) -> list[str]:
    """The classes a verdict names, most likely first: the answer, the shortlist, the closest three when
    the model cannot narrow it down, the closest one otherwise (said as such)."""
    kind = prediction.verdict
    if kind in (ANSWER, SHORTLIST) and prediction.listed:
        return prediction.listed
    return list(prediction.top_k(LONGEST_LIST if kind == UNSURE else 1))


def headline(prediction: Prediction) -> str:
    """The result box's big type: a class name only when the verdict names one or a few."""
    return VERDICTS[prediction.verdict].headline.format(**_words(prediction))


def label_value(prediction: Prediction, top_k: int) -> dict:
    """The result box's value: its headline and, when the verdict names classes, the top-k classes
    with their probabilities (under "not skin" or "another condition" no bar looks like an answer)."""
    shown = prediction.top_k(int(top_k)) if VERDICTS[prediction.verdict].names_classes else {}
    return {"headline": headline(prediction), "confidences": shown}


def verdict(prediction: Prediction, explanation: Explanation | None = None) -> dict:
    """The verdict as data, what /predict and /explain return: its kind (explain.verdicts.KINDS), the
    classes it names (`named_classes`), the coverage the model's shortlist states and the hit rate
    measured for this kind of answer (None without one), each verdict's score and threshold, and the
    sentence in plain text; with `explanation`, which class and method the heatmap shows."""
    kind, words = prediction.verdict, _words(prediction)
    entry, measured = VERDICTS[kind], (prediction.shortlist or {}).get("measured", {})
    summary, rest = entry.summary.format(**words), entry.rest.format(**words)
    hit_rate = measured.get(kind)
    if hit_rate is not None:
        rest = f"{HIT_RATE_WORDS[kind].format(share=f'{hit_rate:.0%}')} {rest}"
    data = {"kind": kind, "classes": named_classes(prediction), "summary": summary, "text": f"{summary} {rest}",
            "coverage": (prediction.shortlist or {}).get("coverage"), "hit_rate": hit_rate,
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


def _words(prediction: Prediction) -> dict:
    """What a verdict's words may name (explain.verdicts.Verdict)."""
    named = named_classes(prediction)
    probability = dict(zip(prediction.labels, prediction.probabilities))
    return {"first": _plain(named[0]), "n": len(prediction.labels),
            "names": _joined([_plain(name) for name in named]),
            "listed": _joined([f"{_plain(name)} ({probability[name]:.0%})" for name in named])}


def _plain(name: str) -> str:
    return name.replace("_", " ")


def _joined(names: list[str]) -> str:
    """"A", "A or B", "A, B or C"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


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


def sanity_failures(service: Service) -> list[str]:
    """The methods the model card's study found failing the sanity checks (none without a card)."""
    return service.model.fails_sanity if service.model else []


def method_choices(service: Service) -> list[tuple[str, str]]:
    """(label, value) choices of the CAM method; a method that fails the sanity checks says so."""
    failing = sanity_failures(service)
    return [(name + (FAILS_SANITY if name in failing else ""), name) for name in METHODS]


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


def explain_arrival(service: Service, photo, method: str = DEFAULT_METHOD, target: str | None = TOP_CLASS,
                    opacity: float = DEFAULT_OPACITY, top_k: int = DEFAULT_TOP_K, resolution: str | None = None):
    """The page's answer to a photo as it arrives (explain_outputs), or an empty answer when the photo
    was removed."""
    if not photo:
        return EMPTY_ANSWER
    return explain_outputs(service, photo, method, target, opacity, top_k, resolution)


def compare_outputs(service: Service, photo, target: str | None = TOP_CLASS, opacity: float = DEFAULT_OPACITY,
                    resolution: str | None = None):
    """/compare: a gallery of (overlay, caption) and the numbers (the page draws its table from them)."""
    comparison = service.compare(photo, _target(target), opacity=opacity, resolution=resolution)
    return _gallery(comparison), rounded({**_numbers(comparison, service.classifier.squares(comparison.resolution)),
                                          "fails_sanity": sanity_failures(service)})


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
        star = "\\*" if method in numbers["fails_sanity"] else ""  # the note below the table says why
        lines.append(f"| {method}{star} | {area:.3f} | {baseline:.3f} | {'yes' if area < baseline else 'no'} | "
                     f"{curve['seconds'] * 1000:.0f} ms |")
    if set(numbers["fails_sanity"]) & set(numbers["methods"]):
        lines += ["", f"\\* {FAILS_SANITY.strip(' ()')}."]
    return "\n".join(lines)


def _numbers(comparison: Comparison, squares: str) -> dict:
    return {"target": comparison.target, "grid": comparison.grid, "squares": squares,
            "random": comparison.random.as_dict(),
            "methods": {row.explanation.method: {"seconds": row.seconds, **row.deletion.as_dict()}
                        for row in comparison.methods},
            "classes": [e.target for e, _ in comparison.classes]}

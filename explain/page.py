"""What the page says: the app's Markdown verdicts and model line, its defaults, and the
functions its events call, turning the service's domain objects into component values.

Gradio-free, so the wording is tested without a browser; `app.py` only wires these to
components. The command line words the same objects as plain text (`explain.__main__`).
"""

from explain.cams import DEFAULT_METHOD
from explain.classifier import Prediction
from explain.service import Service

TOP_CLASS = "Most likely class"  # the "explain which class" choice meaning the top answer
DEFAULT_TOP_K = 3
DEFAULT_OPACITY = 0.45  # of the heatmap over the photo, 0..1
UNCERTAIN = "Uncertain: this photo does not look like any condition this model knows."


def verdict(prediction: Prediction) -> str:
    """One Markdown line: the top answer, or "uncertain" with the closest guess."""
    top = f"{prediction.top_label.replace('_', ' ')} ({prediction.probabilities.max():.0%})"
    if prediction.uncertain:
        return f"**{UNCERTAIN}** Its closest guess would be {top}."
    return f"Most likely: **{top}**. Not a diagnosis."


def model_status(service: Service) -> str:
    """One Markdown line: which model and revision answer, or why none does."""
    if service.model is None:
        return f"**No model is available.** {service.model_error}"
    model = service.model
    line = f"Model **{model.config.name}** ({len(model.labels)} classes), {model.source.describe()}."
    if service.fallback_reason:
        line += f" The configured model could not be loaded, so the bundled model answers instead: {service.fallback_reason}"
    return line


def predict(service: Service, photo, top_k: int = DEFAULT_TOP_K) -> tuple[dict[str, float], str]:
    """/predict: top-k label data and the verdict."""
    prediction = service.predict(photo)
    return prediction.top_k(int(top_k)), verdict(prediction)


def explain(service: Service, photo, method: str = DEFAULT_METHOD, target: str | None = TOP_CLASS,
            opacity: float = DEFAULT_OPACITY, top_k: int = DEFAULT_TOP_K):
    """/explain: top-k label data, the overlay image and the verdict naming the explained class."""
    explanation, picture = service.explain(photo, method, None if target in (None, "", TOP_CLASS) else target,
                                           opacity=opacity)
    note = (verdict(explanation.prediction)
            + f" The heatmap shows what drove **{explanation.target}** ({explanation.method}).")
    return explanation.prediction.top_k(int(top_k)), picture, note

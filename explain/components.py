"""The app's four Gradio components: gr.Image, gr.Gallery and gr.Label, each changed in one method.

With `explain/temp_folder.py`, this is the only module that reaches below Gradio's public API (a
component's `preprocess`/`postprocess`, its `GRADIO_CACHE`, the `ImageData` and `LabelData` it
returns): an upgrade of Gradio that moves them breaks here, and a test keeps it to these two.
"""

import hashlib
import os
import uuid
from pathlib import Path

import gradio as gr
from gradio.components.label import LabelData
from gradio.data_classes import ImageData
from PIL import Image

from explain.overlay import jpeg_bytes


class PhotoInput(gr.Image):
    """gr.Image that hands our function the uploaded file undecoded, so the library's
    safe decoder sees every upload and each bad file gets its own message."""

    is_template = True  # render with the frontend of gr.Image

    def preprocess(self, payload):
        return None if payload is None else payload.path


def cache_jpeg(image: Image.Image, cache: str, name: str) -> ImageData:
    """`image` as JPEG (explain.overlay.jpeg_bytes) in Gradio's cache, at a path named by its content.
    Identical answers share the path; it is written anew for each, so its age (which the sweeper
    reads) starts with that answer, and atomically, so a reader of the file it replaces reads that
    one whole (Gradio's own writer rewrites a shared file in place: the soak caught a Compare map
    served half-written)."""
    data = jpeg_bytes(image)
    path = Path(cache) / hashlib.sha256(data).hexdigest()[:32] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{uuid.uuid4().hex}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return ImageData(path=str(path), orig_name=name)


class HeatmapOutput(gr.Image):
    """gr.Image output written by `cache_jpeg`."""

    is_template = True

    def postprocess(self, value):
        if not isinstance(value, Image.Image):
            return super().postprocess(value)
        return cache_jpeg(value, self.GRADIO_CACHE, "heatmap.jpg")


class MapsGallery(gr.Gallery):
    """gr.Gallery of (image, caption) whose images are written by `cache_jpeg`."""

    is_template = True

    def postprocess(self, value):
        if value:
            value = [(cache_jpeg(image, self.GRADIO_CACHE, "map.jpg").path, caption)
                     if isinstance(image, Image.Image) else (image, caption) for image, caption in value]
        return super().postprocess(value)


class AnswerLabel(gr.Label):
    """gr.Label whose big type is the answer's headline (explain.page.label_value), so a photo that
    gets no answer is never headlined by a class name."""

    is_template = True

    def postprocess(self, value):
        if not (isinstance(value, dict) and "headline" in value):
            return super().postprocess(value)
        if not value["confidences"]:
            return LabelData(label=value["headline"])
        data = super().postprocess(value["confidences"])
        data.label = value["headline"]
        return data

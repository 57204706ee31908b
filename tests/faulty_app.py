"""The app with one more CAM method, which fails inside TensorFlow on bright photos: a request
that breaks on the server, for the test that it gets a clear error and the others go on."""

import runpy
import sys
from pathlib import Path

import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from explain import cams  # noqa: E402

BRIGHT = 200.0  # mean pixel value (0-255) above which the method fails; the warm-up's grey photo passes


class FailsOnBrightPhotos(cams.GradCam):
    name = "Fails on bright photos"

    @classmethod
    def run(cls, outputs, pixels, class_index, read_out=None):
        tf.debugging.assert_less(tf.reduce_mean(pixels), BRIGHT, message="a fault planted by the test")
        return super().run(outputs, pixels, class_index, read_out)


cams.METHODS[FailsOnBrightPhotos.name] = FailsOnBrightPhotos
runpy.run_path(str(ROOT / "app.py"), run_name="__main__")

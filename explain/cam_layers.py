"""Which layers a CAM explains when `config.json` does not say: the last 4-D activation, and the
activation on a grid twice as fine that feeds it (the page's "fine" maps)."""

import keras


def find_cam_layer(model: keras.Model) -> str | None:
    """The last layer with a 4-D output (batch, height, width, channels): the usual CAM target."""
    for layer in reversed(model.layers):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4:
            return layer.name
    return None


def find_finer_layer(model: keras.Model, cam_layer: str) -> str | None:
    """The last activation before `cam_layer` on a grid twice as fine (MobileNetV2 at 224 px:
    `block_13_expand_relu`, 14x14, under `out_relu`, 7x7): maps that can follow a smaller lesion."""
    height, width = model.get_layer(cam_layer).output.shape[1:3]
    # only layers that feed cam_layer: in a model of two backbones, the other one's are no finer view of it
    feeding = {layer.name for layer in keras.Model(model.inputs, model.get_layer(cam_layer).output).layers}
    names = [layer.name for layer in model.layers]
    for layer in reversed([layer for layer in model.layers[: names.index(cam_layer)] if layer.name in feeding]):
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)) and len(layer.output.shape) == 4 \
                and tuple(layer.output.shape[1:3]) == (2 * height, 2 * width):
            return layer.name
    return None

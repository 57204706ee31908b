"""The backbone registry, ResNet-50 v2's converter and a model of two backbones, on real weights where shared."""

import keras
import numpy as np
import pytest
from conftest import SHARED

from explain.cam_layers import find_finer_layer
from training.config import ModelSettings
from training.model.backbones import (
    BACKBONES,
    backbone_layers,
    build_classifier,
    imagenet_sources,
    layer_names,
    parts,
    set_trainable,
    unfrozen_layers,
)
from training.model.resnet_v2_npy import load_npy_weights

RESNET_WEIGHTS = SHARED / "weights" / "resnet_v2_50_imagenet_stages1-3"
JOINED = "mobilenet_v2+resnet50v2_stage3"


@pytest.mark.skipif(not RESNET_WEIGHTS.is_dir(), reason=f"ResNet-50 v2 arrays not found at {RESNET_WEIGHTS}")
def test_resnet_converter_sets_every_trunk_variable_from_a_file_and_uses_every_stage_1_3_file():
    model = build_classifier("resnet50v2_stage3", 4, 64)
    layers = backbone_layers(model)
    for layer in layers:  # NaN everywhere first: a variable no file sets stays NaN
        layer.set_weights([np.full(w.shape, np.nan, np.float32) for w in layer.weights])
    unused = load_npy_weights(layers, RESNET_WEIGHTS)
    assert all(np.all(np.isfinite(w.numpy())) for layer in layers for w in layer.weights)
    files = {p.name for p in RESNET_WEIGHTS.glob("*.npy")}
    read = files - unused
    # the stem and stages 1-3 whole, and stage 4's first pre-activation pair (the trunk's read-out); nothing else
    trunk = {name for name in files if "_block4_" not in name and "_logits_" not in name and "_postnorm_" not in name}
    readout = {f"resnet_v2_50_block4_unit_1_bottleneck_v2_preact_FusedBatchNorm_{p}.npy" for p in ("mul_0_param",
                                                                                                    "add_param")}
    assert read == trunk | readout and len(trunk) == 2 + 13 * 8 + 3 * 2  # stem; 13 units; 3 shortcuts
    kernel = np.load(RESNET_WEIGHTS / "resnet_v2_50_block2_unit_3_bottleneck_v2_conv2_weights.npy")
    assert np.array_equal(model.get_layer("conv3_block3_2_conv").get_weights()[0], kernel.transpose(1, 2, 3, 0))
    # a folded batch norm is the identity plus its bias: x * 1 + beta, exactly
    norm = model.get_layer("conv4_block2_1_bn")
    x = np.random.default_rng(0).normal(size=(1, 2, 2, norm.gamma.shape[0])).astype(np.float32)
    np.testing.assert_allclose(norm(x, training=False), x + norm.beta.numpy(), atol=1e-5)


@pytest.mark.skipif(not RESNET_WEIGHTS.is_dir(), reason=f"ResNet-50 v2 arrays not found at {RESNET_WEIGHTS}")
def test_imagenet_trunk_tells_photos_apart_where_random_weights_barely_do():
    """Loaded right, the trunk's pooled features of two different photos differ more, relative to their
    size, than a (seeded) random network's: a transposed or misplaced array would leave noise."""
    from PIL import Image

    from explain.images import fit_to_model

    examples = sorted((SHARED / "examples-dermnetnz").glob("*.jpg"))[:2]
    pixels = np.stack([fit_to_model(Image.open(p).convert("RGB"), 224) for p in examples]).astype(np.float32)
    keras.utils.set_random_seed(0)  # the random network to compare with is always the same one
    model = build_classifier("resnet50v2_stage3", 3, 224)
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)
    random_features = pooled.predict(pixels, verbose=0)
    load_npy_weights(backbone_layers(model), RESNET_WEIGHTS)
    features = pooled.predict(pixels, verbose=0)
    assert np.all(np.isfinite(features)) and features.min() >= 0  # after the read-out's ReLU
    assert features.std() > 0
    spread = np.abs(features[0] - features[1]).mean() / features.mean()
    random_spread = np.abs(random_features[0] - random_features[1]).mean() / max(random_features.mean(), 1e-9)
    assert spread > 1.5 * random_spread


def test_a_two_backbone_model_builds_trains_a_step_and_reloads_safely(tmp_path):
    model = build_classifier(JOINED, 3, 64, feature_layers=["out_relu", "conv5_block1_preact_relu"])
    assert model.get_layer("pool").output.shape[-1] == 1280 + 1024  # both backbones' pooled features
    mobilenet, resnet = backbone_layers(model, "mobilenet_v2"), backbone_layers(model, "resnet50v2_stage3")
    assert mobilenet and resnet and not {l.name for l in mobilenet} & {l.name for l in resnet}
    set_trainable(model, {"mobilenet_v2": 0, "resnet50v2_stage3": 69})
    trainable = [l for l in backbone_layers(model) if l.trainable]
    assert trainable and all(l.name.startswith(("conv4_", "conv5_block1")) for l in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    # the finer map of MobileNetV2's CAM layer is MobileNetV2's own, not the other backbone's 14x14 layer
    assert find_finer_layer(model, "out_relu") == "block_13_expand_relu"
    assert find_finer_layer(model, "conv5_block1_preact_relu") in layer_names("resnet50v2_stage3")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    before = [w.numpy().copy() for w in model.get_layer("conv4_block6_3_conv").weights]
    assert np.isfinite(model.train_on_batch(x, keras.utils.to_categorical([0, 1, 2, 0], 3)))
    assert not np.array_equal(before[0], model.get_layer("conv4_block6_3_conv").weights[0].numpy())
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_a_backbone_is_one_entry_and_a_bad_name_or_setting_says_what_to_write():
    for name, entry in BACKBONES.items():
        assert entry.cam_layer in layer_names(name) and entry.end in layer_names(name)
        assert entry.licence and entry.trainable_layers > 0
    with pytest.raises(ValueError, match="choose one of"):
        parts("mobilenet_v3")
    with pytest.raises(ValueError, match="must map each backbone"):
        imagenet_sources(ModelSettings(backbone=JOINED, imagenet_weights="some/folder"))
    sources = imagenet_sources(ModelSettings(backbone=JOINED, imagenet_weights={
        "mobilenet_v2": "default", "resnet50v2_stage3": None}))
    assert sources["mobilenet_v2"].endswith("mobilenet_v2_1.0_224_imagenet") and sources["resnet50v2_stage3"] is None
    assert unfrozen_layers(JOINED, None) == {"mobilenet_v2": 30, "resnet50v2_stage3": 69}

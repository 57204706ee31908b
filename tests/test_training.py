"""The training pipeline, end to end on generated photos, and its safeguards."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SHARED
from hub_server import FakeHub, fetch
from PIL import Image

from explain.classifier import Classifier
from explain.images import fit_to_model, load_photo
from explain.model import ModelSource, load_model_folder
from explain.verdicts import SCORE_NAMES, SET_RULES, VERDICT_OF
from training.config import AugmentSettings, ExperimentConfig
from training.data.photos import dataset
from training.data.tables import class_names, read_rows, write_rows
from training.evaluation.abstention import held_out_half
from training.model.backbones import backbone_layers, build_classifier, set_trainable, unfrozen_layers
from training.model.fitting import feature_view, new_model
from training.steps import ablate
from training.steps.split import LeakageError, check_no_leakage

WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet"


def test_pipeline_writes_every_artifact(pipeline_run):
    for name in ("config.json", "curated.csv", "curation_summary.csv", "split.csv", "train/model.keras",
                 "train/history.csv", "report.json", "confusion_matrix.png", "training_curves.png",
                 "reliability.png", "export/model.keras", "export/model_float32.tflite",
                 "export/model_dynamic_range.tflite", "export/model.onnx", "model/README.md"):
        assert (pipeline_run / name).is_file(), name


def test_split_is_by_original_photo_with_out_of_taxonomy_kept_apart(pipeline_run):
    rows = read_rows(pipeline_run / "split.csv")
    assert {r["split"] for r in rows} == {"train", "val", "test", "ood"}
    assert all(r["split"] == "ood" for r in rows if r["source_class"] == "Blank")
    # photos of other conditions are split too, each condition whole on one side of every split
    other = [r for r in rows if r["other_condition"]]
    assert {r["split"] for r in other} == {"train", "val", "test"} and not any(r["target_class"] for r in other)
    by_condition = {}
    for r in other:
        by_condition.setdefault(r["other_condition"], set()).add((r["split"], r["fold"]))
    assert len(by_condition) == 12 and all(len(places) == 1 for places in by_condition.values())
    by_cluster = {}
    for r in rows:
        by_cluster.setdefault(r["cluster"], set()).add(r["split"])
    assert all(len(splits) == 1 for splits in by_cluster.values())
    assert {r["fold"] for r in rows if r["split"] != "ood"} == {"0", "1"}


def test_curation_drops_bad_and_duplicate_photos_and_split_keeps_near_duplicates_together(tmp_path, capsys):
    """Planted: near duplicates (a 4-pixel crop, pHash distance 3 to 6: kept, one cluster), a re-saved copy
    (distance <= 2: dropped), a byte copy, an unreadable file and a tiny photo."""
    import imagehash
    from PIL import Image
    from synthetic import make_photo, tiny_config, write_dataset

    from training.__main__ import main

    root = write_dataset(tmp_path / "data", per_class=12, seed=3)
    folder = root / "photos" / "Dots"
    pairs = []
    for i in range(3):
        original = folder / f"dots_{i:03d}.jpg"
        for crop in range(1, 8):  # the smallest crop that makes a near duplicate, not a copy
            Image.open(original).crop((crop, crop, 128, 128)).resize((128, 128)).save(folder / f"near_{i}.jpg",
                                                                                      quality=92)
            distance = imagehash.phash(Image.open(original)) - imagehash.phash(Image.open(folder / f"near_{i}.jpg"))
            if distance > 2:
                break
        assert 2 < distance <= 6, distance  # the planted case is real: kept, but must share a cluster
        pairs.append((str(original), str(folder / f"near_{i}.jpg")))
    Image.open(folder / "dots_005.jpg").save(folder / "z_resaved.jpg", quality=60)  # "z": after the original
    (folder / "z_copy.jpg").write_bytes((folder / "dots_006.jpg").read_bytes())
    (folder / "notes.jpg").write_text("not a photo")
    make_photo("Dots", np.random.default_rng(1), size=32).save(folder / "tiny.jpg")
    config = tiny_config(root, tmp_path / "run")
    assert main(["curate", "--config", str(config)]) == 0 and main(["split", "--config", str(config)]) == 0
    assert "dropped: 1 unreadable, 1 too small, 1 exact duplicate, 1 near duplicate" in capsys.readouterr().out
    rows = {r["path"]: r for r in read_rows(tmp_path / "run" / "split.csv") if r["source"] == "synthetic"}
    assert len(rows) == 3 * 12 + 4 + 3  # the classes, the out-of-taxonomy photos, the kept near duplicates
    assert not any(name in path for path in rows for name in ("z_resaved", "z_copy", "notes", "tiny"))
    for original, near in pairs:
        assert rows[original]["cluster"] == rows[near]["cluster"]
        assert (rows[original]["split"], rows[original]["fold"]) == (rows[near]["split"], rows[near]["fold"])


def test_leakage_check_catches_a_planted_duplicate(pipeline_run):
    rows = read_rows(pipeline_run / "split.csv")
    check_no_leakage(rows, within=6)  # the real split is clean
    test_row = next(r for r in rows if r["split"] == "test")
    planted = {**test_row, "path": "copy_of_a_test_photo.jpg", "split": "train"}
    with pytest.raises(LeakageError, match="near-identical photo in train"):
        check_no_leakage(rows + [planted], within=6)
    almost = {**planted, "sha256": "different", "phash": format(int(test_row["phash"], 16) ^ 0b101, "016x")}
    with pytest.raises(LeakageError):
        check_no_leakage(rows + [almost], within=6)


def test_report_has_test_cv_calibration_and_abstention(pipeline_run):
    report = json.loads((pipeline_run / "report.json").read_text())
    test = report["test"]
    assert test["n"] == report["counts"]["test"] and 0.5 <= test["accuracy"] <= 1.0
    assert set(test["per_class"]) == {"Dots", "Rings", "Stripes"}
    assert np.array(test["confusion_matrix"]).sum() == test["n"]
    assert report["cross_validation"]["folds"] == 2 and len(report["cross_validation"]["accuracy"]["folds"]) == 2
    assert report["calibration"]["temperature"] > 0
    abstention = report["abstention"]
    ood = abstention["ood"]["synthetic conditions outside the taxonomy"]
    assert set(ood["auroc_by_score"]) == set(SCORE_NAMES.values())
    # three verdicts, each on its own score, every threshold from validation; what each set gets adds up
    assert set(abstention["thresholds"]) == set(VERDICT_OF)
    assert None not in [abstention["thresholds"][name] for name in ("skin", "energy", "similarity")]
    assert abstention["thresholds"]["top_probability"] is None  # the shortlist says how sure the model is
    held_out = abstention["ood"]["other conditions held out whole (test split)"]
    for verdicts in (held_out["verdicts"], abstention["test_verdicts"]):
        assert sum(verdicts.values()) == pytest.approx(1.0)
    assert abstention["test_verdicts"]["answer"] == pytest.approx(abstention["test_coverage"])
    # the skin read-out is fitted on one half of the bare-skin and not-skin folders and measured on the other
    # (how well it tells them apart is tested on the shipped model: the tiny one never learned colour)
    for name, folder in (("not skin", "not_skin"), ("bare skin", "bare_skin")):
        held = [p for p in (pipeline_run.parent / folder).iterdir() if held_out_half(p)]
        assert abstention["ood"][name]["n"] == len(held) and 6 <= len(held) <= 18
    for curve in abstention["risk_coverage"].values():
        assert curve["coverage"][-1] == 1.0
        assert curve["risk"][-1] == pytest.approx(1 - test["accuracy"], abs=1e-3)  # everything answered
    assert (pipeline_run / "risk_coverage.png").stat().st_size > 10_000
    cv = report["cross_validation"]
    auroc = cv["other_condition_auroc"]
    assert auroc["mean"] == pytest.approx(np.mean(auroc["folds"])) and len(auroc["folds"]) == 2
    assert set(cv["per_class_recall"]) == {"Dots", "Rings", "Stripes"}
    logo = report["logo"]  # the tiny config marks a corner box, as the shipped config does the logo
    assert logo["n"] == test["n"] and logo["box_area_share"] == pytest.approx(0.1 * 0.1, abs=0.005)
    assert logo["top1"]["as served"] == pytest.approx(test["accuracy"], abs=1.01 / test["n"])  # the app's pass
    assert set(logo["top1"]) == {"as served", "logo removed", "control removed"}
    assert 0 < logo["cam_share_in_box"] < 1


def test_the_app_gives_each_photo_the_verdict_the_evaluation_counted(pipeline_run, test_photos):
    """The shipped thresholds, applied by the app's compiled pass and by the evaluation's arrays."""
    from explain.verdicts import prediction_sets, scaled_softmax, scores, verdicts
    from training.data.photos import photo_pixels
    from training.model.served import cam_features_and_logits

    folder = pipeline_run / "model"
    classifier = Classifier(load_model_folder(folder, ModelSource("folder", str(folder))))
    report = json.loads((pipeline_run / "report.json").read_text())
    rows = read_rows(pipeline_run / "split.csv")
    photos = [r["path"] for r in rows if r["split"] == "test"]  # ours and other conditions'
    app = [classifier.predict(load_photo(p, 10**8, 10**8)).verdict for p in photos]
    pixels = np.stack([photo_pixels(p, 96, []) for p in photos])
    features, logits = cam_features_and_logits(classifier.keras_model, classifier.cam_layer, pixels)
    read = scores(features, logits, classifier.temperature, np.load(pipeline_run / "skin_readout.npy"),
                  classifier.class_means)
    thresholds = classifier.config.thresholds  # as rounded into config.json
    assert thresholds == pytest.approx(report["abstention"]["thresholds"], abs=1e-4)
    shortlist = classifier.config.shortlist
    sizes = prediction_sets(scaled_softmax(logits, classifier.temperature), shortlist["score"],
                            shortlist["threshold"]).sum(axis=1)
    assert app == list(verdicts(read, thresholds, sizes))
    assert len(set(app)) >= 2  # the photos are not all given one verdict


def test_risk_coverage_ranks_mistakes_last_for_a_perfect_score():
    from training.evaluation.metrics import risk_coverage

    correct = np.array([1, 1, 1, 0, 0], dtype=bool)
    perfect = risk_coverage(np.array([5, 4, 3, 2, 1.0]), correct)
    worst = risk_coverage(np.array([1, 2, 3, 4, 5.0]), correct)
    assert perfect["risk"] == [0.0, 0.0, 0.0, 0.25, 0.4] and perfect["aurc"] == pytest.approx(0.13)
    assert worst["risk"][0] == 1.0 and worst["aurc"] > perfect["aurc"]


def test_exports_agree_with_the_keras_model(pipeline_run):
    export = json.loads((pipeline_run / "report.json").read_text())["export"]
    for name in ("keras", "tflite_float32", "onnx"):
        assert export[name]["max_abs_diff"] < 1e-4 and export[name]["top1_agreement"] == 1.0, name
    assert export["tflite_dynamic_range"]["size_mb"] < export["tflite_float32"]["size_mb"]
    assert export["tflite_dynamic_range"]["top1_agreement"] >= 0.9


def test_published_folder_loads_in_the_app_and_predicts(pipeline_run, test_photos):
    folder = pipeline_run / "model"
    loaded = load_model_folder(folder, ModelSource("folder", str(folder)))
    config = json.loads((folder / "config.json").read_text())
    assert config["cam_layer"] == "out_relu" and loaded.skin_readout.shape == (1281,)
    assert None not in (config["thresholds"][name] for name in ("skin", "energy", "similarity"))
    shortlist = config["shortlist"]  # calibrated on half the test split, measured on the other half
    assert shortlist["score"] in SET_RULES and shortlist["coverage"] == 0.8 and 0 < shortlist["threshold"] <= 1
    report = json.loads((pipeline_run / "report.json").read_text())["shortlist"]
    assert report["calibration_photos"] + report["measured"]["n"] == json.loads(
        (pipeline_run / "report.json").read_text())["counts"]["test"]
    assert sum(report["measured"]["verdicts"].values()) == pytest.approx(1.0)
    assert "## The shortlist: how sure the answer is" in (folder / "README.md").read_text()
    assert "logits" in [layer.name for layer in loaded.keras_model.layers]  # fine conditions summed inside the model
    assert not any("augmentation" in layer.name or "random" in layer.name for layer in loaded.keras_model.layers)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "model-index:" in card and "## Disclaimer" in card
    prediction = Classifier(loaded).predict(load_photo(test_photos[0][0], 10**8, 10**8))
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_publish_uploads_to_a_hub_and_the_app_can_load_it_back(pipeline_run, test_photos, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from training.steps import publish

    hub = FakeHub().start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token_for_the_local_hub")
        config = ExperimentConfig.load(pipeline_run / "config.json", publish={"hub_repo": "skin-demo/published"})
        publish.run(config, dry_run=False)
        stored = hub.repos["skin-demo/published"]
        files = stored["commits"][stored["refs"]["main"]]
        assert set(files) == {"model.keras", "labels.json", "config.json", "skin_readout.npy", "class_means.npy",
                              "README.md"}
        assert files["model.keras"] == (pipeline_run / "model" / "model.keras").read_bytes()
        # download it as the app does (a fresh process: huggingface_hub reads HF_ENDPOINT at import), load, predict
        fetched = fetch({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home")}, "skin-demo/published", None)
        assert fetched["commit"] == stored["refs"]["main"]
        source = ModelSource("hub", "skin-demo/published", fetched["commit"])
        loaded = load_model_folder(Path(fetched["folder"]), source)
        prediction = Classifier(loaded).predict(load_photo(test_photos[0][0], 10**8, 10**8))
        local = Classifier(load_model_folder(pipeline_run / "model", ModelSource("folder", "local")))
        np.testing.assert_allclose(prediction.probabilities,
                                   local.predict(load_photo(test_photos[0][0], 10**8, 10**8)).probabilities, atol=1e-6)
    finally:
        hub.stop()


@pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"ImageNet .npy weights not found at {WEIGHTS}")
def test_npy_converter_sets_every_backbone_variable():
    from training.model.mobilenet_npy import load_npy_weights

    model = build_classifier("mobilenet_v2", 4, 96)
    before = [w.numpy().copy() for layer in backbone_layers(model) for w in layer.weights]
    leftover = load_npy_weights(backbone_layers(model), WEIGHTS)
    after = [w.numpy() for layer in backbone_layers(model) for w in layer.weights]
    assert leftover == {"Logits_Conv2d_1c_1x1_biases.npy"}
    assert sum(int(np.prod(w.shape)) for w in after) == 2_257_984
    changed = [not np.array_equal(b, a) for b, a in zip(before, after)]
    assert all(changed[i] for i, (b, a) in enumerate(zip(before, after)) if b.std() > 0 or a.std() > 0)
    first = np.load(WEIGHTS / "Conv_weights.npy")
    assert np.array_equal(model.get_layer("Conv1").get_weights()[0], first)


@pytest.mark.parametrize("backbone,size", [("mobilenet_v2", 64), ("resnet50", 64)])
def test_backbones_build_train_a_step_and_reload_safely(backbone, size, tmp_path):
    from training.model.fitting import augmentation

    model = build_classifier(backbone, 3, size, augmentation=augmentation(AugmentSettings(), seed=0))
    set_trainable(model, unfrozen_layers(backbone, None))
    trainable_norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization) and l.trainable]
    assert not trainable_norms  # BatchNorm stays in inference mode
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    assert np.allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("change,expected", [
    ({"training": {"head_epoch": 3}}, "training: unknown setting 'head_epoch' \\(did you mean 'head_epochs'\\?\\)"),
    ({"head_epochs": 3}, "unknown setting 'head_epochs' \\(it belongs in the 'training' section\\)"),
    ({"model": {"image_size": 96, "head_epochs": 3}}, "model: unknown setting 'head_epochs' \\(it belongs in the "
                                                      "'training' section\\)"),
    ({"data": {"sources": [{"name": "a", "root": "r", "taxonomy": "t", "mask_box": []}]}},
     "data.sources\\[0\\]: unknown setting 'mask_box' \\(did you mean 'mask_boxes'\\?\\)"),
    ({"data": {"sources": [{"name": "a", "root": "r"}]}}, "data.sources\\[0\\]: missing setting taxonomy"),
    ({"evaluation": {"ood_folders": {"web": "w"}, "skin_readout_folders": {"webb": True}}},
     "skin_readout_folders names 'webb', which is not one of ood_folders \\(web\\)"),
    ({"model": {"fine_labels": True}, "training": {"head_on_features": False}}, "fine_labels needs head_on_features"),
])
def test_a_misspelled_or_missing_setting_is_named(tmp_path, change, expected):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path / "run"), **change}))
    with pytest.raises(ValueError, match=expected):
        ExperimentConfig.load(path)


def test_config_defaults_follow_the_backbone():
    assert unfrozen_layers("resnet50", None) == {"resnet50": 50}
    assert unfrozen_layers("mobilenet_v2", None) == {"mobilenet_v2": 30}
    assert unfrozen_layers("mobilenet_v2", 7) == {"mobilenet_v2": 7}
    joined = "mobilenet_v2+resnet50v2_stage3"
    assert unfrozen_layers(joined, {"resnet50v2_stage3": 69}) == {"mobilenet_v2": 0, "resnet50v2_stage3": 69}


def test_rerun_skips_finished_steps(pipeline_run, capsys):
    """`all` again: every finished step's outputs keep their bytes and their modification time."""
    from training.__main__ import main

    outputs = ["curated.csv", "split.csv", "train/model.keras", "report.json", "export/model.keras"]
    before = {name: ((pipeline_run / name).read_bytes(), os.stat(pipeline_run / name).st_mtime_ns) for name in outputs}
    assert main(["all", "--config", str(pipeline_run / "config.json"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for step in ("curate", "split", "train", "evaluate", "export"):
        assert f"{step}: " in printed and "exists (use --force to redo)" in printed, step
    for name, (data, mtime) in before.items():
        assert (pipeline_run / name).read_bytes() == data and os.stat(pipeline_run / name).st_mtime_ns == mtime, name


def test_augment_balances_from_training_originals_only(pipeline_run, tmp_path):
    from training.steps.augment import balance

    rows = read_rows(pipeline_run / "split.csv")
    made = balance(rows, target=25, folder=tmp_path, seed=1)
    train_paths = {r["path"] for r in rows if r["split"] == "train"}
    assert made and all(r["augmented_from"] in train_paths and r["split"] == "train" for r in made)
    counts = {c: sum(r["target_class"] == c and r["split"] == "train" for r in rows + made) for c in ("Dots", "Rings")}
    assert all(n >= 25 for n in counts.values())
    again = balance(rows, target=25, folder=tmp_path / "again", seed=1)
    first, second = made[0]["path"], again[0]["path"]
    assert open(first, "rb").read() == open(second, "rb").read()  # seeded: the same copies every run


@pytest.mark.skipif(not WEIGHTS.is_dir(), reason="needs ImageNet MobileNetV2 weights from ../shared/weights")
def test_ablation_scores_each_variant_on_the_same_folds_and_reaches_the_card(pipeline_run, tmp_path, capsys):
    from training.__main__ import main
    from training.report.card import render_card

    config = json.loads((pipeline_run / "config.json").read_text())
    with pytest.raises(ValueError, match="pretrained"):  # frozen random features would compare nothing
        ablate.run(ExperimentConfig.from_dict(config).changed(data={"sources": []}, model={"imagenet_weights": None}))
    config = ExperimentConfig.from_dict(config).changed(
        output_dir=str(tmp_path), model={"alpha": 1.0, "imagenet_weights": str(WEIGHTS)},
        augment={"flip": True, "contrast": 0.15}, evaluation={"ablations": {
            "as configured": {}, "no label smoothing": {"training": {"label_smoothing": 0.0}},
            "image size 64": {"model": {"image_size": 64}},
            "2 augmented copies per photo": {"training": {"head_augmented_copies": 2}},
            "fine-tuned briefly": {"fine_tune": True, "training": {"head_epochs": 2, "finetune_epochs": 1,
                                                                   "unfreeze_layers": 5}}}}).as_dict()
    (tmp_path / "split.csv").write_bytes((pipeline_run / "split.csv").read_bytes())
    (tmp_path / "ablate.json").write_text(json.dumps(config))
    assert main(["ablate", "--config", str(tmp_path / "ablate.json")]) == 0
    ablation = json.loads((tmp_path / "ablation.json").read_text())
    assert list(ablation["variants"]) == list(config["evaluation"]["ablations"])
    for result in ablation["variants"].values():
        assert len(result["accuracy"]["folds"]) == 2 and 0.0 <= result["accuracy"]["mean"] <= 1.0
    assert ablation["variants"]["as configured"]["accuracy"]["mean"] >= 0.5  # three easy classes; chance 0.33
    features = tmp_path / "ablation" / "features"
    assert len(list(features.glob("64px/view*.npy"))) == 2
    assert len(list(features.glob("96px/view*.npy"))) == 4
    assert "96 px, views [2, 3]" in capsys.readouterr().out  # the photo and mirror views were reused
    assert len(list((tmp_path / "ablation" / "fine_tuned_briefly" / "cv").glob("fold*/logits.npy"))) == 2
    # augmented copies differ from the photos and from each other, and copy 1 is the same
    # whether it is computed alone or after copy 0
    photo_view, copy0, copy1 = (np.load(features / "96px" / f"view{i}.npy") for i in (0, 2, 3))
    assert not np.allclose(copy0, photo_view, atol=1e-3) and not np.allclose(copy0, copy1, atol=1e-3)
    variant = ExperimentConfig.load(tmp_path / "ablate.json")
    rows = [r for r in read_rows(tmp_path / "split.csv") if r["fold"] != "" and r["target_class"]]
    names = class_names(rows)
    alone = feature_view(new_model(variant, len(names)), dataset(rows, names, variant, shuffle=False), variant, 3)
    np.testing.assert_allclose(alone, copy1, atol=1e-5)
    del ablation["variants"]["no label smoothing"]  # a variant to redo: finished ones are read back, not redone
    (tmp_path / "ablation.json").write_text(json.dumps(ablation))
    main(["ablate", "--config", str(tmp_path / "ablate.json")])
    out = capsys.readouterr().out
    assert "ablation: no label smoothing" in out and "ablation: as configured" not in out and "features of" not in out
    ablation = json.loads((tmp_path / "ablation.json").read_text())
    assert list(ablation["variants"]) == list(config["evaluation"]["ablations"])
    report = json.loads((pipeline_run / "report.json").read_text())
    card = render_card(ExperimentConfig.load(tmp_path / "ablate.json"), report, ablation)
    assert "What each setting is worth" in card and "| no label smoothing |" in card


def test_augmentation_is_fixed_by_its_seed_and_each_op_changes_the_photo(synthetic_root):
    import tensorflow as tf

    from training.model.augmentation_tf import augment

    photo = np.asarray(load_photo(next((synthetic_root / "photos" / "Dots").glob("*.jpg")), 10**7, 10**8)
                       .resize((110, 110)))
    plain = {"crop_min": 1.0, "flip": False, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0,
             "hue": 0.0, "white_balance": 0.0, "jpeg_quality_min": 0, "erase": 0.0}
    seed = tf.constant([3, 7], tf.int64)

    def view(seed=seed, **change):
        return augment(tf.constant(photo), seed, AugmentSettings(**{**plain, **change}), 96).numpy()

    base = view()
    assert base.shape == (96, 96, 3) and base.dtype == np.float32
    served = fit_to_model(Image.fromarray(photo), 96)  # with every op off: the photo resized whole, as served
    assert np.abs(base - served).mean() < 3.0
    strong = {"crop_min": 0.55, "flip": True, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05,
              "white_balance": 0.1, "jpeg_quality_min": 40, "erase": 1.0, "blur": 1.0}
    for name, value in strong.items():
        changed = view(**{name: value})
        seeds = [tf.constant([s, 1], tf.int64) for s in range(4)]
        differs = [np.abs(view(s, **{name: value}) - base).mean() > 0.5 for s in seeds]
        assert any(differs), name  # the op does something for some seed
        np.testing.assert_array_equal(changed, view(**{name: value}))  # and the same thing for the same seed
        assert changed.min() >= 0.0 and changed.max() <= 255.0, name
    everything = view(**strong)
    assert not np.array_equal(everything, view(tf.constant([4, 7], tf.int64), **strong))


def _train_in_process(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "training", "train", "--config", str(config), *args],
                            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _epochs_done(checkpoint: Path) -> int:
    try:
        with np.load(checkpoint) as saved:
            return json.loads(str(saved["state"]))["epoch"]
    except (OSError, KeyError, ValueError):
        return 0


def test_a_fine_tune_keeps_the_moving_average_and_trains_on_from_its_own_weights():
    """finetune_ema: inside `_averaged` the variables hold the optimizer's moving average (between
    where training started and where it is); after it, the trained values, unchanged."""
    import tensorflow as tf

    from training.model.finetune import _averaged

    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    start = [v.numpy() for v in layer.trainable_variables]
    optimizer = keras.optimizers.AdamW(0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build(layer.trainable_variables)
    for _ in range(4):
        optimizer.apply_gradients([(tf.ones_like(v), v) for v in layer.trainable_variables])
    trained = [v.numpy() for v in layer.trainable_variables]
    with _averaged(optimizer, layer.trainable_variables):
        averaged = [v.numpy() for v in layer.trainable_variables]
    for before, average, after, now in zip(start, averaged, trained, layer.trainable_variables):
        assert np.all(after < average) and np.all(average < before)  # each step lowers every weight
        np.testing.assert_array_equal(now.numpy(), after)


def test_an_interrupted_fine_tune_resumes_to_the_same_model(pipeline_run, tmp_path):
    """Killed (SIGKILL) after its first epoch, then `--resume`d: the same weights as a run never stopped,
    the moving average of the weights (finetune_ema, in the optimizers' state) included, though the
    resume names another Hub repo and card. Without --resume, the step refuses to overwrite the
    checkpoint and says what to pass."""
    config = json.loads((pipeline_run / "config.json").read_text())
    runs = {}
    for name in ("straight", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "split.csv").write_bytes((pipeline_run / "split.csv").read_bytes())
        runs[name] = tmp_path / f"{name}.json"
        config["training"] |= {"finetune_epochs": 4, "finetune_ema": 0.9}
        runs[name].write_text(json.dumps({**config, "output_dir": str(folder)}))
    straight = _train_in_process(runs["straight"])
    assert straight.wait(timeout=600) == 0, straight.stdout.read()
    killed = _train_in_process(runs["killed"])
    checkpoint = tmp_path / "killed" / "train" / "finetune_checkpoint" / "checkpoint.npz"
    deadline = time.time() + 600
    while _epochs_done(checkpoint) < 1 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    killed.kill()
    killed.wait()
    assert 1 <= _epochs_done(checkpoint) < 4  # stopped part way
    refused = _train_in_process(runs["killed"])
    assert refused.wait(timeout=600) == 2 and "pass --resume to continue it" in refused.stdout.read()
    # where it is published, its card and its study sizes change no weights: it still resumes
    changed = json.loads(runs["killed"].read_text())
    changed["publish"] |= {"hub_repo": "someone/else", "card_path": str(tmp_path / "c.md")}
    changed["evaluation"] |= {"explanation_photos": 7}
    runs["killed"].write_text(json.dumps(changed))
    resumed = _train_in_process(runs["killed"], "--resume")
    output = resumed.stdout.read()
    assert resumed.wait(timeout=600) == 0 and "resuming after epoch" in output, output
    weights = [keras.saving.load_model(tmp_path / name / "train" / "model.keras", compile=False).get_weights()
               for name in ("straight", "killed")]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    history = read_rows(tmp_path / "killed" / "train" / "history.csv")
    assert [r["stage"] for r in history].count("2") == 4  # each fine-tune epoch logged once


def test_score_answers_held_out_photos_through_the_apps_code(pipeline_run, tiny_model_dir, classifier, test_photos,
                                                             tmp_path):
    """`score`: the test split's top-1 is the app classifier's own; --unseen-by leaves out exactly the
    photos another split trained on."""
    from training.__main__ import main

    config = str(pipeline_run / "config.json")
    assert main(["score", "--config", config, "--model-dir", str(tiny_model_dir), "--force"]) == 0
    scored = json.loads((pipeline_run / "scores.json").read_text())[str(tiny_model_dir)]["test split"]
    right = [classifier.predict(load_photo(path, 10**8, 10**8)).top_label == truth for path, truth in test_photos]
    assert scored["n"] == len(test_photos) and scored["top1"] == pytest.approx(np.mean(right))
    assert sum(scored["verdicts"].values()) == pytest.approx(1.0) and sum(scored["top_class"].values()) == scored["n"]
    earlier = read_rows(pipeline_run / "split.csv")
    trained_on = {path for path, _ in test_photos[:3]}
    for row in earlier:
        row["split"] = "train" if row["path"] in trained_on else row["split"]
    write_rows(tmp_path / "earlier_split.csv", earlier)
    assert main(["score", "--config", config, "--model-dir", str(tiny_model_dir), "--force",
                 "--unseen-by", str(tmp_path / "earlier_split.csv")]) == 0
    scored = json.loads((pipeline_run / "scores.json").read_text())[str(tiny_model_dir)]["test split"]
    assert scored["n"] == len(test_photos) - 3


def test_score_writes_the_logo_study_into_a_cards_own_section(pipeline_run, tiny_model_dir, tmp_path):
    """`score --card`, for a model trained before the logo study: its card gets the study once, rerun or not."""
    import shutil

    from training.__main__ import main

    folder = tmp_path / "older_model"
    shutil.copytree(tiny_model_dir, folder)
    config = str(pipeline_run / "config.json")
    for _ in range(2):
        assert main(["score", "--config", config, "--model-dir", str(folder), "--card"]) == 0
    logo = json.loads((pipeline_run / "scores.json").read_text())[str(folder)]["logo"]
    card = (folder / "README.md").read_text()
    assert card.count("## The logo: what a photo without it gets") == 1
    assert f"| logo removed | {logo['top1']['logo removed']:.1%} |" in card
    assert card.startswith((tiny_model_dir / "README.md").read_text().rstrip("\n"))  # the rest untouched


def test_an_explicit_other_output_is_compared_with_the_served_rule_on_unseen_conditions(pipeline_run, tiny_model_dir):
    """`other`: a head over the classes and "another condition", fitted on the training split's
    conditions; flagged on validation as often as the served rule, compared on the test split's
    conditions, which it never saw."""
    from training.__main__ import main

    assert main(["other", "--config", str(pipeline_run / "config.json"), "--model-dir", str(tiny_model_dir)]) == 0
    study = json.loads((pipeline_run / "other_output.json").read_text())
    assert 0 <= study["rate on validation"] <= 1
    served = study["served rule"]
    assert set(served) == {"ours told another condition (test)", "other conditions caught (test)"}
    heads = [r for name, r in study.items() if name.startswith("explicit output")]
    assert len(heads) == 4 and all(0 <= r["top-1 on ours (test)"] <= 1 for r in heads)
    assert all(0 <= r[k] <= 1 for r in heads for k in ("ours told another condition (test)",
                                                      "other conditions caught (test)"))
    assert (pipeline_run / "other_output_features.npz").is_file()  # a rerun reads the features back


def test_leave_one_source_out_tests_each_library_on_a_model_of_the_others(pipeline_run, tmp_path):
    """Two sources of one photo library (Source.library) are left out together, never one trained on."""
    from training.evaluation.crossval import cross_source

    config = ExperimentConfig.load(pipeline_run / "config.json", output_dir=str(tmp_path),
                                   training={"head_epochs": 2, "finetune_epochs": 1},
                                   data={"sources": [{"name": "library-a-more", "root": "", "taxonomy": "",
                                                      "library": "library-a"}]})
    rows = [r for r in read_rows(pipeline_run / "split.csv") if r["target_class"]]
    for i, row in enumerate(rows):
        row["source"] = ("library-a", "library-b", "library-a-more")[i % 3]
    names = class_names(rows)
    result = cross_source(config, rows, names)
    assert set(result) == {"library-b -> library-a", "library-a -> library-b"}
    assert result["library-b -> library-a"]["n"] == sum(r["source"] != "library-b" for r in rows)
    assert all((tmp_path / "cross_source" / f"without_{s}" / "logits.npy").is_file() for s in ("library-a", "library-b"))


def test_a_config_extends_another_and_says_only_how_it_differs(tmp_path):
    """configs/frozen.json extends the shipped recipe: every setting it does not name, section by section,
    is the shipped one's, and a misspelled setting in a variant is still named."""
    from conftest import ROOT

    configs = ROOT / "configs"
    shipped, frozen = (ExperimentConfig.load(configs / f"{name}.json").as_dict() for name in ("default_model", "frozen"))
    own = json.loads((configs / "frozen.json").read_text())
    assert own["extends"] == "default_model.json" and sum(map(len, own.values())) < 60
    for name, value in shipped.items():
        if name not in own:
            assert frozen[name] == value
        elif isinstance(value, dict):  # a section: only the settings it names differ
            assert frozen[name] == value | own[name] and value.keys() - own[name].keys()
    assert frozen["training"]["finetune_epochs"] == 0 and frozen["output_dir"] == own["output_dir"]
    (tmp_path / "variant.json").write_text(json.dumps({"extends": str(configs / "frozen.json"),
                                                       "training": {"finetune_epoch": 3}}))
    with pytest.raises(ValueError, match="'finetune_epoch' \\(did you mean 'finetune_epochs'\\?\\)"):
        ExperimentConfig.load(tmp_path / "variant.json")


def test_calibrate_gives_a_folder_its_shortlist_from_the_runs_split(pipeline_run, tiny_model_dir, tmp_path):
    """`calibrate`, for a model trained before the shortlist: the folder's config gets the one the run's
    evaluation computed (same photos, same code), the card its section once, rerun or not."""
    import shutil

    from training.__main__ import main

    folder = tmp_path / "older_model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "shortlist"}))
    for _ in range(2):
        assert main(["calibrate", "--config", str(pipeline_run / "config.json"), "--model-dir", str(folder)]) == 0
    written = json.loads((folder / "config.json").read_text())
    assert written["shortlist"] == config["shortlist"] and written["thresholds"]["top_probability"] is None
    assert (folder / "README.md").read_text().count("## The shortlist: how sure the answer is") == 1
    load_model_folder(folder, ModelSource("folder", str(folder)))  # what the app reads


LAYERS = ["config", "data", "model", "evaluation", "report", "steps", "__main__"]  # docs/training.md's order


def test_no_import_in_training_runs_back_up_its_layers():
    """Each folder of training/ imports only itself and the folders before it, so a newcomer can read
    data/ without model/, and a step is never a helper's helper."""
    import ast

    root = Path(__file__).resolve().parent.parent / "training"
    upward = []
    for path in root.rglob("*.py"):
        layer = path.relative_to(root).parts[0].removesuffix(".py")
        if layer == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "training" and len(parts) > 1 and \
                        LAYERS.index(parts[1]) > LAYERS.index(layer):
                    upward.append(f"{path.relative_to(root)} imports {name}")
    assert not upward, upward
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py", "__main__.py", "config.py"]


def test_readmes_where_things_go_names_what_the_code_has():
    """README's "Where things go": each file or folder it names exists, and each name it gives is defined
    in the file named beside it, so the sentence a newcomer follows stays true as the code moves."""
    import re

    from conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8").split("<!-- where-things-go -->\n")[1].split("\n\n")[0]
    for clause in text.split(";"):
        paths = re.findall(r"`([\w/]+(?:\.py|/))`", clause)
        names = [n for n in re.findall(r"`([\w.]+)`", clause) if not n.endswith((".py", "/"))]
        assert paths, clause
        assert all((ROOT / p).exists() for p in paths), clause
        sources = "".join((ROOT / p).read_text(encoding="utf-8") for p in paths if p.endswith(".py"))
        for name in names:
            if "." in name:  # a config setting: section.setting
                section, setting = name.split(".")
                assert hasattr(getattr(ExperimentConfig(), section), setting), name
            else:
                assert re.search(rf"^(class|def) {name}\b|^{name} = ", sources, re.M), (name, clause)

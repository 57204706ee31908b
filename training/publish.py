"""Step 7, publish: assemble the model folder the app loads and upload it to the Hub.

The folder holds `model.keras` (inference graph), `labels.json`, `config.json`,
`class_means.npy` (for the "uncertain" answer), the model card as `README.md` and optional
`examples/`. `--dry-run` only writes it. The token
comes from the environment (`HF_TOKEN`) or the local login, never from the config.
"""

import json
import shutil
from pathlib import Path

from huggingface_hub import HfApi

from training.backbones import CAM_LAYERS
from training.card import render_card
from training.config import ExperimentConfig, expand


def model_config(config: ExperimentConfig, report: dict) -> dict:
    """The app's `config.json` (see explain.model.ModelConfig)."""
    return {
        "name": config.model_name,
        "image_size": config.image_size,
        "preprocessing": config.backbone,
        "cam_layer": CAM_LAYERS[config.backbone],
        "temperature": round(report["calibration"]["temperature"], 4),
        "abstain_threshold": round(report["abstention"]["threshold"], 4),
        "abstain_score": config.abstain_score,
        "backbone": config.backbone,
        "resize": "whole photo, bilinear",
    }


def assemble(config: ExperimentConfig, out: Path) -> Path:
    report = json.loads((config.out / "report.json").read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(config.out / "export" / "model.keras", out / "model.keras")
    (out / "labels.json").write_text(json.dumps(report["classes"], indent=1) + "\n", encoding="utf-8")
    (out / "config.json").write_text(json.dumps(model_config(config, report), indent=2) + "\n", encoding="utf-8")
    if config.abstain_score == "feature_similarity":
        shutil.copy(config.out / "class_means.npy", out / "class_means.npy")
    ablation_path = config.out / "ablation.json"
    ablation = json.loads(ablation_path.read_text(encoding="utf-8")) if ablation_path.is_file() else None
    (out / "README.md").write_text(render_card(config, report, ablation), encoding="utf-8")
    if config.examples_dir and Path(expand(config.examples_dir)).is_dir():
        shutil.copytree(expand(config.examples_dir), out / "examples")
    return out


def upload(folder: Path, repo_id: str) -> str:
    """Create the repo if needed and upload the folder; returns the commit hash."""
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Publish model from training pipeline")
    return commit.oid


def run(config: ExperimentConfig, force: bool = False, dry_run: bool = True) -> Path:
    folder = assemble(config, config.out / "model")
    print(f"publish: model folder written to {folder}")
    if config.bundle_dir:
        shutil.copytree(folder, config.bundle_dir, dirs_exist_ok=True)
        shutil.copy(folder / "README.md", config.card_path or Path(config.bundle_dir) / "README.md")
        print(f"publish: bundled into {config.bundle_dir}, card at {config.card_path}")
    if dry_run:
        print("publish: dry run, nothing uploaded")
        return folder
    commit = upload(folder, config.hub_repo)
    print(f"publish: uploaded to {config.hub_repo} at commit {commit}")
    return folder

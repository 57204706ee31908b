"""Step 7, publish: assemble the model folder the app loads and upload it to the Hub.

The folder holds `model.keras` (inference graph), `labels.json`, `config.json`,
`skin_readout.npy` and `class_means.npy` (for the verdicts), the model card as `README.md` and optional
`examples/`. `--dry-run` only writes it. The token
comes from the environment (`HF_TOKEN`) or the local login, never from the config.
"""

import json
import shutil
from pathlib import Path

import numpy as np
from huggingface_hub import HfApi

from explain.model import (
    CARD_FILE,
    CLASS_MEANS_FILE,
    MODEL_FILE,
    SKIN_READOUT_FILE,
    ModelSource,
    load_model_folder,
    write_model_folder,
)
from training.config import ExperimentConfig, expand
from training.model.served import model_config
from training.report.card import render_card


def assemble(config: ExperimentConfig, out: Path) -> Path:
    """The model folder (explain.model's contract) from the run's export, report and card."""
    report = json.loads((config.out / "report.json").read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    ablation, explanations = (json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
                              for path in (config.out / "ablation.json", config.out / "explanations.json"))
    readout, means = (np.load(config.out / name) if (config.out / name).is_file() else None
                      for name in (SKIN_READOUT_FILE, CLASS_MEANS_FILE))
    examples = Path(expand(config.publish.examples_dir)) if config.publish.examples_dir else None
    write_model_folder(out, config.out / "export" / MODEL_FILE, report["classes"], model_config(config, report),
                       render_card(config, report, ablation, explanations), readout, means,
                       examples if examples and examples.is_dir() else None)
    return out


def upload(folder: Path, repo_id: str) -> str:
    """Create the repo if needed and upload the folder; returns the commit hash."""
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Publish model from training pipeline")
    return commit.oid


def run(config: ExperimentConfig, dry_run: bool = True) -> Path:
    folder = assemble(config, config.out / "model")
    load_model_folder(folder, ModelSource("folder", str(folder)))  # never publish a folder the app refuses
    print(f"publish: model folder written to {folder} and checked by loading it")
    if config.publish.bundle_dir:
        shutil.copytree(folder, config.publish.bundle_dir, dirs_exist_ok=True)
        shutil.copy(folder / CARD_FILE, config.publish.card_path or Path(config.publish.bundle_dir) / CARD_FILE)
        print(f"publish: bundled into {config.publish.bundle_dir}, card at {config.publish.card_path}")
    if dry_run:
        print("publish: dry run, nothing uploaded")
        return folder
    commit = upload(folder, config.publish.hub_repo)
    print(f"publish: uploaded to {config.publish.hub_repo} at commit {commit}")
    return folder

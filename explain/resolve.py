"""Which model answers: `SKIN_MODEL_DIR` (a folder), else `SKIN_MODEL_REPO`[@`SKIN_MODEL_REVISION`]
on the Hugging Face Hub (explain.hub), else the bundled default model."""

from pathlib import Path

from explain.errors import ModelNotConfiguredError
from explain.hub import fetch_model_folder
from explain.model import FOLDER_PATTERNS, MODEL_FILE, LoadedModel, ModelSource, load_model_folder
from explain.settings import BUNDLED_MODEL_DIR, Settings


def resolve_model(settings: Settings) -> LoadedModel:
    """The configured model: local folder, then Hub repo, then the bundled default."""
    if settings.model_dir:
        return load_model_folder(Path(settings.model_dir), ModelSource("folder", settings.model_dir))
    if settings.model_repo:
        folder, commit = fetch_model_folder(settings.model_repo, settings.model_revision, FOLDER_PATTERNS,
                                            settings.hub_timeout)
        return load_model_folder(folder, ModelSource("hub", settings.model_repo, commit))
    if (BUNDLED_MODEL_DIR / MODEL_FILE).is_file():
        return load_bundled_model()
    raise ModelNotConfiguredError(
        "No model is configured: set SKIN_MODEL_DIR to a model folder or SKIN_MODEL_REPO to a "
        "Hugging Face model repo (see README, 'Choosing the model')."
    )


def load_bundled_model() -> LoadedModel:
    return load_model_folder(BUNDLED_MODEL_DIR, ModelSource("bundled", BUNDLED_MODEL_DIR.name))

"""Fetching a model folder from the Hugging Face Hub into the standard cache.

`snapshot_download` honours `HF_ENDPOINT`, `HF_HUB_OFFLINE` and the cache the Space's
`preload_from_hub` fills, so the same call works online, offline and on a Space.
"""

from pathlib import Path

import httpx2
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from explain.errors import ModelDownloadError


def fetch_model_folder(repo_id: str, revision: str | None, patterns: list[str],
                       timeout: float = 10.0) -> tuple[Path, str]:
    """Download (or find in the cache) the files of a model repo matching `patterns`
    (explain.model.FOLDER_PATTERNS); returns its folder and commit hash.

    `snapshot_download` asks the Hub for the revision with no time limit, so a Hub that accepts
    the connection and never answers would hang the app's start. A first request, limited to
    `timeout` seconds, checks that the Hub answers; when it does not (or HF_HUB_OFFLINE=1), the
    folder comes from the local cache alone, and only if it is whole: a download killed midway leaves
    the file it was writing as an `.incomplete` blob, never linked into the snapshot, and
    huggingface_hub refuses the snapshot; the next start that reaches the Hub resumes it."""
    where = f"{repo_id}@{revision or 'main'}"
    try:
        try:
            HfApi().repo_info(repo_id, revision=revision, timeout=timeout)
            folder = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=patterns)
        except (httpx2.TransportError, OfflineModeIsEnabled):
            folder = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=patterns,
                                       local_files_only=True)
    except RepositoryNotFoundError as err:
        raise ModelDownloadError(
            f"Model repo {repo_id} was not found on the Hub (or it is private or gated). "
            "Check SKIN_MODEL_REPO, and set HF_TOKEN if the repo is private."
        ) from err
    except RevisionNotFoundError as err:
        raise ModelDownloadError(
            f"Revision {revision!r} does not exist in {repo_id}. "
            "Check SKIN_MODEL_REVISION (a branch, tag or 40-character commit hash)."
        ) from err
    except IncompleteSnapshotError as err:
        raise ModelDownloadError(
            f"Model {where} is only partly in the local Hugging Face cache (a download was interrupted) and "
            f"the Hub cannot be reached (offline, or no answer within {timeout:.0f} s). Connect once to finish "
            "the download, or point SKIN_MODEL_DIR at a local model folder."
        ) from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise ModelDownloadError(
            f"Model {where} is not in the local Hugging Face cache and the Hub cannot be reached "
            f"(offline, or no answer within {timeout:.0f} s). Connect once to download it, or point "
            "SKIN_MODEL_DIR at a local model folder."
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise ModelDownloadError(f"Could not download model {where} from the Hub: {err}") from err
    folder = Path(folder)
    return folder, folder.name  # the snapshot folder is named after the commit

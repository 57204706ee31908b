"""The repository as a Hugging Face Space: its front matter agrees with what the app serves."""

import re

import yaml
from conftest import ROOT

from explain.model import FOLDER_PATTERNS


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL).group(1))


def pinned(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==")[1]
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_front_matter_builds_what_the_app_serves():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pinned("gradio")
    assert meta["python_version"] == "3.11" and (ROOT / meta["app_file"]).is_file()
    # With no SKIN_MODEL_* variable the app serves the bundled model, so the Space must not
    # announce or preload a Hub model it would never serve (README, 'Choosing the model').
    assert "models" not in meta and "preload_from_hub" not in meta
    # the preload line README tells you to add fetches exactly the model folder's files
    files = re.search(r'preload_from_hub: \["ORG/NAME ([^"]+)"\]', (ROOT / "README.md").read_text()).group(1)
    assert set(files.split(",")) == {p for p in FOLDER_PATTERNS if "*" not in p}

"""`python -m explain` for people without a browser."""

import json
import os
import subprocess
import sys

from conftest import ROOT, VERDICT_OPENINGS
from PIL import Image


def test_cli_prints_json_and_writes_overlays(tiny_model_dir, test_photos, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    photos = [p for p, _ in test_photos[:3]] + [str(bad)]
    result = subprocess.run(
        [sys.executable, "-m", "explain", *photos, "--json", "--top-k", "2", "--cam-out", str(tmp_path / "cams")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "SKIN_MODEL_DIR": str(tiny_model_dir)},
    )
    assert result.returncode == 1  # one photo failed, and the exit code says so
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 4
    for line in lines[:3]:
        assert len(line["top"]) == 2 and Image.open(line["overlay"]).format == "JPEG"
        assert "Map check (Grad-CAM of " in line["verdict"] and "**" not in line["verdict"]
        check = line["faithfulness"]
        assert check["fraction"] == 0.2 and check["target"] in ("Dots", "Rings", "Stripes")
        assert check["probability"] == max(line["top"].values())  # the top class is the one explained
    assert "not a photo this app can read" in lines[3]["error"]
    assert "photos: 100%" in result.stderr  # a progress bar for several files


def test_cli_prints_a_table_in_its_own_words(tiny_model_dir, test_photos):
    """Plain text: the top classes, the verdict and the map's check; without --cam-out no overlay is written."""
    photos = [p for p, _ in test_photos[:2]]
    result = subprocess.run([sys.executable, "-m", "explain", *photos], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "SKIN_MODEL_DIR": str(tiny_model_dir)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith(photos[0] + ": ") and lines[2].startswith(photos[1] + ": ")
    for row, verdict in (lines[0:2], lines[2:4]):
        assert sum(name in row for name in ("Dots", "Rings", "Stripes")) == 3 and row.count("%") == 3
        assert verdict.startswith("    ") and verdict[4:].startswith(VERDICT_OPENINGS)  # the page's words
    assert "**" not in result.stdout and "overlay" not in result.stdout.lower() and "Map check (Grad-CAM of" in lines[1]
    assert "model: tiny-test-model, folder model at" in result.stderr


def test_a_missing_file_or_a_folder_is_said_so_in_the_commands_words(tiny_model_dir, test_photos, tmp_path):
    """Not the page's "no longer on the server": the file does not exist, or it is a folder; the other photos
    are still answered."""
    missing = tmp_path / "missing.jpg"
    result = subprocess.run([sys.executable, "-m", "explain", str(missing), str(tmp_path), test_photos[0][0],
                             "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SKIN_MODEL_DIR": str(tiny_model_dir)})
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["error"] == "No such file: check the path."
    assert lines[1]["error"].startswith("This is a folder, not a photo") and f"{tmp_path}/*.jpg" in lines[1]["error"]
    assert "top" in lines[2] and "no longer on the server" not in result.stdout


def test_cli_without_a_model_says_how_to_configure_one(tmp_path):
    env = {**os.environ, "SKIN_MODEL_DIR": str(tmp_path / "missing")}
    result = subprocess.run([sys.executable, "-m", "explain", str(ROOT / "examples" / "astronaut-face.jpg")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2 and "has no model.keras" in result.stderr


def test_a_setting_out_of_range_is_refused_in_one_line(tiny_model_dir, test_photos):
    """A usage error, not a traceback, and before any photo is read."""
    for args, expected in ((["--opacity", "2"], "argument --opacity: Heatmap opacity must be between 0 and 1"),
                           (["--opacity", "half"], "argument --opacity: not a number: 'half'"),
                           (["--resolution", "finest"], "argument --resolution: invalid choice: 'finest'")):
        result = subprocess.run([sys.executable, "-m", "explain", test_photos[0][0], *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "SKIN_MODEL_DIR": str(tiny_model_dir)})
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not result.stdout

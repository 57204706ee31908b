"""The app's example photos: each is credited, and the clinical ones are the originals, byte for byte."""

import csv
import hashlib
import re

import pytest
from conftest import ROOT, SHARED

from explain.service import example_name

EXAMPLES = ROOT / "examples"
ORIGINALS = SHARED / "examples-dermnetnz"


def rows() -> dict[str, list[str]]:
    """examples/README.md's table: file name -> its cells (what, source, licence)."""
    table = {}
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|\s*$", line)
        if match:
            table[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return table


def test_every_example_has_a_row_with_source_and_licence():
    table = rows()
    photos = sorted(p.name for p in EXAMPLES.iterdir() if p.name != "README.md")
    assert len(photos) == 16 and sorted(table) == photos
    for name, (what, source, licence) in table.items():
        assert what and source and licence, name


def test_the_clinical_examples_are_the_dermnet_originals_byte_for_byte():
    table = rows()
    clinical = {name: cells for name, cells in table.items() if "DermNet" in cells[1]}
    assert len(clinical) == 12
    for name, (what, source, licence) in clinical.items():
        assert source == "Image: DermNet (dermnetnz.org)" and "CC BY-NC-ND 3.0 NZ" in licence
        assert "https://creativecommons.org/licenses/by-nc-nd/3.0/nz/" in licence
        recorded = re.search(r"sha256 `([0-9a-f]{64})`", what).group(1)
        assert hashlib.sha256((EXAMPLES / name).read_bytes()).hexdigest() == recorded, name
    labels = {example_name(str(EXAMPLES / name)) for name in clinical}
    assert labels == {"Acne", "Alopecia", "Carcinoma", "Dermatitis", "Dermatofibroma", "Eczema", "Keratosis",
                      "Melanoma", "Onychomycosis", "Psoriasis", "Rosacea", "Tinea"}


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason=f"the shared originals are not at {ORIGINALS}")
def test_the_recorded_hashes_are_the_shared_originals():
    manifest = {r["file"]: r for r in csv.DictReader(open(ORIGINALS / "manifest.csv", encoding="utf-8"))}
    assert len(manifest) == 12
    for name, row in manifest.items():
        assert (EXAMPLES / name).read_bytes() == (ORIGINALS / name).read_bytes(), name
        assert hashlib.sha256((EXAMPLES / name).read_bytes()).hexdigest() == row["original_sha256"]


PAD_UFES = SHARED / "data" / "pad-ufes-subset" / "images"


@pytest.mark.skipif(not PAD_UFES.is_dir(), reason=f"the PAD-UFES-20 photos are not at {PAD_UFES}")
def test_the_phone_examples_are_pad_ufes_originals_with_their_credit():
    phone = {name: cells for name, cells in rows().items() if "PAD-UFES-20" in cells[1]}
    assert sorted(phone) == ["carcinoma-phone.jpg", "naevus-phone.jpg"]
    for name, (what, source, licence) in phone.items():
        original = PAD_UFES / re.search(r"PAD-UFES-20 `([^`]+)`", what).group(1)
        assert (EXAMPLES / name).read_bytes() == original.read_bytes(), name
        assert hashlib.sha256(original.read_bytes()).hexdigest() == re.search(r"sha256 `([0-9a-f]{64})`", what).group(1)
        assert "Pacheco et al. 2020" in source and "https://creativecommons.org/licenses/by/4.0/" in licence

"""Reading the model card: the disclaimer the app shows, the note under the heatmap and the CAM methods
the card's own study found failing the sanity checks all come from its named sections."""

import re
from pathlib import Path

DISCLAIMER_HEADING = "Disclaimer"
TRUST_HEADING = "How far the heatmaps can be trusted"  # the page shows this section under the heatmap
# `python -m training explanations` writes this section; its table's "sanity" column says which methods fail
EXPLANATIONS_HEADING = "Faithfulness and sanity of the heatmaps"
FAILS = "FAILS"

# Shown when a model's card has no disclaimer section: the app never answers without one.
FALLBACK_DISCLAIMER = (
    "**This is not a diagnosis.** This demo is a research model that guesses which of a few "
    "skin conditions a photo resembles. It can be wrong, it cannot examine you, and it knows "
    "nothing about conditions it was not trained on. **See a doctor or dermatologist about any "
    "skin problem that worries you, changes, bleeds or does not heal.**"
)


def read_section(markdown: str, heading: str) -> str | None:
    """The body of the first `#`..`###` section titled `heading`, up to the next heading of its level or above."""
    match = re.search(rf"^(#{{1,3}})\s+{re.escape(heading)}\s*$", markdown, flags=re.MULTILINE)
    if not match:
        return None
    level = len(match.group(1))
    rest = markdown[match.end() :]
    next_heading = re.search(rf"^#{{1,{level}}}\s", rest, flags=re.MULTILINE)
    body = rest[: next_heading.start()] if next_heading else rest
    return body.strip() or None


def card_section(card_path: Path | None, heading: str) -> str | None:
    """A section of the card file, or None when the card or the section is missing."""
    if card_path is None or not card_path.is_file():
        return None
    return read_section(card_path.read_text(encoding="utf-8"), heading)


def disclaimer(card_path: Path | None) -> str:
    """The card's disclaimer section, or the fallback when the card or section is missing."""
    return card_section(card_path, DISCLAIMER_HEADING) or FALLBACK_DISCLAIMER


def failing_sanity(card_path: Path | None) -> list[str]:
    """The CAM methods whose maps failed the sanity checks at every map size the card's study measured
    (a measurement of this model, so the page labels what the card found); none without the study."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in (card_section(card_path, EXPLANATIONS_HEADING) or "").splitlines() if line.startswith("|")]
    if not rows or "sanity" not in rows[0]:
        return []
    method, sanity = rows[0].index("method"), rows[0].index("sanity")
    verdicts: dict[str, set] = {}
    for row in rows[2:]:  # after the header and its |---| line
        verdicts.setdefault(row[method], set()).add(row[sanity])
    return [name for name, seen in verdicts.items() if seen == {FAILS}]

"""Step 1, curate: every readable photo of every source, mapped to the taxonomy, deduplicated.

Writes `curated.csv` (one row a photo: path, source, source class, target class, hashes,
size, near-duplicate cluster) and `curation_summary.csv` (counts per class).
"""

import collections
import hashlib
import json
from pathlib import Path

import imagehash
import numpy as np
from tqdm import tqdm

from explain.errors import InputImageError
from training.config import ExperimentConfig, Source, expand
from training.data.grouping import hamming_matrix
from training.data.photos import IMAGE_SUFFIXES, read_photo
from training.data.tables import print_table, read_rows, write_rows
from training.steps import already_done

OUT_OF_TAXONOMY = ""  # target class of a photo kept only for out-of-distribution checks


def list_photos(source: Source) -> list[tuple[Path, str, str, str]]:
    """(path, source class, cluster hint, fine-grained condition) for every image file of a source."""
    root = Path(expand(source.root))
    manifest = root / "manifest.csv"
    if source.class_column and manifest.is_file():
        return [
            (root / row["path"], row[source.class_column], row.get(source.cluster_column or "", "") or "",
             row[source.fine_column or source.class_column])
            for row in read_rows(manifest)
        ]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [(p, p.parent.name, "", p.parent.name) for p in files]


def load_taxonomy(path: str) -> dict[str, str | None]:
    mapping = json.loads(Path(expand(path)).read_text(encoding="utf-8"))
    return {k: v for k, v in mapping.items() if not k.startswith("_")}


def cluster_ids(distances: np.ndarray, within: int, hints: list[str]) -> list[int]:
    """Union-find over pairs closer than `within` bits and photos sharing a cluster hint."""
    parent = list(range(len(distances)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = list(zip(*np.nonzero(np.triu(distances <= within, k=1))))
    by_hint = collections.defaultdict(list)
    for i, hint in enumerate(hints):
        if hint:
            by_hint[hint].append(i)
    pairs += [(group[0], j) for group in by_hint.values() for j in group[1:]]
    for i, j in pairs:
        parent[find(i)] = find(j)
    return [find(i) for i in range(len(distances))]


def curate(config: ExperimentConfig) -> list[dict]:
    rows, dropped = [], collections.Counter()
    for source in config.data.sources:
        # an other-conditions source's taxonomy (optional) names the few of its conditions that are a class
        taxonomy = load_taxonomy(source.taxonomy) if source.taxonomy else {}
        for path, source_class, hint, fine in tqdm(list_photos(source), desc=f"curate {source.name}", unit="photo"):
            if source.other_conditions and not taxonomy.get(source_class):
                # kept whole: a condition is one cluster, on one side of every split
                taxonomy[source_class], hint = None, hint or source_class
            if source_class not in taxonomy:
                raise ValueError(
                    f"Class folder {source_class!r} of source {source.name} is not in {source.taxonomy}: "
                    "add it there, mapped to a product class or to null (out of taxonomy)."
                )
            try:
                photo = read_photo(path)
            except InputImageError:
                dropped["unreadable"] += 1
                continue
            if min(photo.size) < config.data.min_side:
                dropped["too small"] += 1
                continue
            target = taxonomy[source_class] or OUT_OF_TAXONOMY
            rows.append({
                "path": str(path), "source": source.name, "source_class": source_class, "target_class": target,
                "fine_class": f"{source.name}:{fine}" if target else "",
                "other_condition": source_class if source.other_conditions and not target else "",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "phash": str(imagehash.phash(photo)),
                "width": photo.width, "height": photo.height, "hint": f"{source.name}:{hint}" if hint else "",
            })
    rows = _drop_duplicates(rows, config.data.duplicate_distance, dropped)
    distances = hamming_matrix([r["phash"] for r in rows])
    for row, cluster in zip(rows, cluster_ids(distances, config.data.cluster_distance, [r.pop("hint") for r in rows])):
        row["cluster"] = cluster
    if dropped:
        print("dropped:", ", ".join(f"{n} {why}" for why, n in dropped.items()))
    return rows


def _drop_duplicates(rows: list[dict], within: int, dropped: collections.Counter) -> list[dict]:
    """Keep the first of each group of byte-identical or visually identical photos."""
    seen_sha, kept = set(), []
    for row in rows:
        if row["sha256"] in seen_sha:
            dropped["exact duplicate"] += 1
            continue
        seen_sha.add(row["sha256"])
        kept.append(row)
    distances = hamming_matrix([r["phash"] for r in kept])
    duplicate = np.triu(distances <= within, k=1).any(axis=0)  # a later copy of an earlier photo
    dropped["near duplicate"] += int(duplicate.sum())
    return [row for row, dup in zip(kept, duplicate) if not dup]


def summary(rows: list[dict]) -> list[dict]:
    counts = collections.Counter((r["target_class"] or "(out of taxonomy)", r["source"]) for r in rows)
    sources = sorted({r["source"] for r in rows})
    classes = sorted({c for c, _ in counts})
    return [{"class": c, **{s: counts[(c, s)] for s in sources}, "total": sum(counts[(c, s)] for s in sources)}
            for c in classes]


def run(config: ExperimentConfig, force: bool = False) -> Path:
    out = config.out / "curated.csv"
    if already_done("curate", out, force):
        return out
    rows = curate(config)
    write_rows(out, rows)
    table = summary(rows)
    write_rows(config.out / "curation_summary.csv", table)
    print_table(table)
    return out

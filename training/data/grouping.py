"""Which photos belong together: perceptual-hash distances (near-duplicates, clusters) and
stratified splits that keep each group whole, so no photo's twin sits on the other side."""

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def hamming_matrix(hashes: list[str]) -> np.ndarray:
    """Pairwise distances in bits between hex perceptual hashes."""
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(h), dtype=np.uint8)) for h in hashes]).astype(np.int32)
    return bits @ (1 - bits).T + (1 - bits) @ bits.T


def group_split(labels: list[str], groups: list, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out): about `fraction` held out, stratified by label, whole groups only."""
    n_splits = max(2, round(1 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, held_out = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return rest, held_out

"""How unmatched faces are grouped into recurring strangers: the rule itself, without a database.

The service (domain/unknowns.py) and the benchmark that chose its threshold (bench/unknowns.py)
both run these functions, so the measured behaviour is the shipped one.

A group is represented by its centroid: the L2-normalised mean of its faces' embeddings. A face
joins the group whose centroid is most similar to it when that similarity reaches the grouping
threshold, else it starts a group of its own. Comparing with centroids rather than with every
member keeps one wrong face from pulling strangers in (a chain of single links would), and costs
one vector per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def normalised(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def joined_centroid(centroid: np.ndarray, count: int, embedding: np.ndarray) -> np.ndarray:
    """The centroid of a group of `count` faces after one more joins it."""
    return normalised(centroid * count + embedding)


@dataclass
class Grouping:
    """Groups kept in memory: what the benchmark runs (the service keeps them in PostgreSQL)."""

    threshold: float
    dim: int = 512
    centroids: np.ndarray = field(init=False)
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.centroids = np.zeros((64, self.dim), dtype=np.float32)

    def nearest(self, embedding: np.ndarray) -> tuple[int | None, float]:
        if not self.counts:
            return None, -1.0
        similarities = self.centroids[: len(self.counts)] @ embedding
        best = int(np.argmax(similarities))
        return best, float(similarities[best])

    def add(self, embedding: np.ndarray) -> int:
        """The group the face joins (a new one when none is similar enough)."""
        best, similarity = self.nearest(embedding)
        if best is not None and similarity >= self.threshold:
            self.centroids[best] = joined_centroid(self.centroids[best], self.counts[best], embedding)
            self.counts[best] += 1
            return best
        if len(self.counts) == len(self.centroids):
            self.centroids = np.concatenate([self.centroids, np.zeros_like(self.centroids)])
        self.centroids[len(self.counts)] = normalised(embedding)
        self.counts.append(1)
        return len(self.counts) - 1


def regroup(labels: np.ndarray, embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """What the periodic re-grouping does to the groups that arrival order made.

    1. Each group's centroid is computed again from its faces.
    2. A face closer to another group's centroid than to its own, and at or above the threshold
       there, moves to that group (a face that joined early, before its group took shape).
    3. Groups whose centroids reach the threshold are merged; the result keeps the oldest
       (smallest) label, so ids stay stable: a merged group answers to the older id.
    """
    labels = labels.copy()
    for _ in range(2):
        ids, centroids = _centroids(labels, embeddings)
        similarity = embeddings @ centroids.T
        own = similarity[np.arange(len(labels)), np.searchsorted(ids, labels)]
        best = similarity.argmax(axis=1)
        moves = (similarity[np.arange(len(labels)), best] >= threshold) & (
            similarity[np.arange(len(labels)), best] > own
        )
        labels[moves] = ids[best[moves]]
    return merge_close_groups(labels, embeddings, threshold)


def merge_close_groups(labels: np.ndarray, embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Merge the most similar pair of groups while their centroids reach the threshold; the
    merged group keeps the older (smaller) label. One similarity row is updated per merge."""
    labels = labels.copy()
    ids = np.unique(labels)
    if len(ids) < 2:
        return labels
    sums = np.stack([embeddings[labels == i].sum(axis=0) for i in ids]).astype(np.float64)
    centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -np.inf)
    alive = np.ones(len(ids), dtype=bool)
    while True:
        flat = int(np.argmax(similarity))
        a, b = divmod(flat, len(ids))
        if similarity[a, b] < threshold:
            break
        keep, gone = (a, b) if ids[a] < ids[b] else (b, a)
        labels[labels == ids[gone]] = ids[keep]
        sums[keep] += sums[gone]
        alive[gone] = False
        similarity[gone, :] = similarity[:, gone] = -np.inf
        centroid = sums[keep] / np.linalg.norm(sums[keep])
        row = (sums / np.linalg.norm(sums, axis=1, keepdims=True)) @ centroid
        row[~alive] = -np.inf
        row[keep] = -np.inf
        similarity[keep, :] = similarity[:, keep] = row
    return labels


def _centroids(labels: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.unique(labels)
    centroids = np.stack([normalised(embeddings[labels == i].sum(axis=0)) for i in ids])
    return ids, centroids


def bcubed(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """BCubed precision (purity: how much of an item's group is its identity) and recall
    (completeness: how much of an item's identity is in its group), averaged over items."""
    _, group = np.unique(labels, return_inverse=True)
    _, identity = np.unique(truth, return_inverse=True)
    cells = np.zeros((group.max() + 1, identity.max() + 1), dtype=np.int64)
    np.add.at(cells, (group, identity), 1)
    squares = cells.astype(np.float64) ** 2
    precision = (squares / cells.sum(axis=1, keepdims=True)).sum() / len(labels)
    recall = (squares / cells.sum(axis=0, keepdims=True)).sum() / len(labels)
    return float(precision), float(recall)

"""The grouping rule of recurring unknown faces (domain/unknown_grouping.py), on synthetic
embeddings: what the service and its benchmark both run."""

from __future__ import annotations

import numpy as np
import pytest

from domain.unknown_grouping import Grouping, bcubed, merge_close_groups, normalised, regroup

DIM = 64


def person(rng: np.random.Generator, photos: int, spread: float) -> np.ndarray:
    """Photos of one person: a random identity direction plus noise."""
    centre = normalised(rng.normal(size=DIM))
    return np.stack([normalised(centre + spread * rng.normal(size=DIM) / np.sqrt(DIM)) for _ in range(photos)])


def test_photos_of_one_person_join_one_group_and_strangers_start_their_own():
    rng = np.random.default_rng(1)
    alice, bob = person(rng, 5, 0.5), person(rng, 5, 0.5)
    grouping = Grouping(0.5, dim=DIM)
    labels = [grouping.add(e) for pair in zip(alice, bob, strict=True) for e in pair]
    assert labels[0::2] == [0] * 5 and labels[1::2] == [1] * 5
    assert grouping.counts == [5, 5]


def test_a_threshold_above_every_similarity_keeps_everyone_apart():
    rng = np.random.default_rng(2)
    grouping = Grouping(0.999, dim=DIM)
    assert [grouping.add(e) for e in person(rng, 4, 0.5)] == [0, 1, 2, 3]


def test_groups_grow_past_their_first_capacity():
    rng = np.random.default_rng(3)
    grouping = Grouping(0.99, dim=DIM)
    for e in normalised(rng.normal(size=(200, DIM)).T).T:
        grouping.add(normalised(e))
    assert len(grouping.counts) == 200


@pytest.mark.parametrize(
    ("labels", "truth", "expected"),
    [
        ([0, 0, 1, 1], [0, 0, 1, 1], (1.0, 1.0)),
        ([0, 0, 0, 0], [0, 0, 1, 1], (0.5, 1.0)),
        ([0, 1, 2, 3], [0, 0, 1, 1], (1.0, 0.5)),
    ],
)
def test_bcubed_precision_and_recall(labels, truth, expected):
    assert bcubed(np.array(labels), np.array(truth)) == pytest.approx(expected)


def test_regrouping_merges_one_person_split_in_two_into_the_older_id():
    rng = np.random.default_rng(4)
    photos = person(rng, 6, 0.4)
    labels = np.array([3, 3, 3, 7, 7, 7])  # arrival order split them; 3 is the older group
    assert regroup(labels, photos, 0.5).tolist() == [3] * 6


def test_regrouping_moves_a_face_to_the_group_it_belongs_to_and_keeps_ids():
    rng = np.random.default_rng(5)
    alice, bob = person(rng, 4, 0.3), person(rng, 4, 0.3)
    photos = np.concatenate([alice, bob])
    labels = np.array([1, 1, 1, 1, 1, 2, 2, 2])  # the first of Bob's photos joined Alice early
    after = regroup(labels, photos, 0.5)
    assert after.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]


def test_merging_stops_below_the_threshold():
    rng = np.random.default_rng(6)
    photos = np.concatenate([person(rng, 3, 0.3), person(rng, 3, 0.3)])
    labels = np.array([1, 1, 1, 2, 2, 2])
    assert merge_close_groups(labels, photos, 0.9).tolist() == labels.tolist()

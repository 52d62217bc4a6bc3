"""The threshold rule's first two steps, taken when a search is asked for (the last, from the
gallery's size, needs the database: tests/stack/test_open_set.py)."""

from __future__ import annotations

from domain.recognition import threshold_choice


def test_the_request_wins_over_the_gallery():
    assert threshold_choice(0.6, 0.4) == {"threshold": 0.6, "threshold_source": "request"}


def test_the_gallery_own_threshold_when_the_request_has_none():
    assert threshold_choice(None, 0.4) == {"threshold": 0.4, "threshold_source": "gallery"}


def test_neither_leaves_the_threshold_to_the_search():
    assert threshold_choice(None, None) == {"threshold": None}

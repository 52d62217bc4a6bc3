"""Which detected face a target_face (x,y,w,h) designates: the one it overlaps most, at least IoU 0.5."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic_core import PydanticCustomError

from domain.enrollment import as_target_face, overlap, source_sha256, target_first
from domain.errors import FaceError
from web.schemas import parse_target_face


@dataclass
class Face:
    bbox: list[float]


FACES = [Face([100, 100, 200, 220]), Face([300, 90, 390, 200]), Face([500, 120, 580, 210])]


def test_overlap_is_intersection_over_union_of_a_box_and_an_x_y_w_h_target():
    assert overlap([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert overlap([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert overlap([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0


def test_the_face_overlapping_most_comes_first_whatever_its_size():
    chosen = target_first(FACES, [495, 115, 90, 100])  # a loose box around the smallest face
    assert chosen[0] is FACES[2] and chosen[1:] == FACES[:2]
    assert target_first(FACES, parse_target_face(as_target_face(FACES[1].bbox)))[0] is FACES[1]


def test_a_target_over_no_face_names_the_faces_found():
    with pytest.raises(FaceError) as refused:
        target_first(FACES, [0, 0, 50, 50])
    assert refused.value.code == "target_face_not_found"
    assert refused.value.details["target_faces"] == ["100,100,100,120", "300,90,90,110", "500,120,80,90"]
    with pytest.raises(FaceError) as none:
        target_first([], [0, 0, 50, 50])
    assert none.value.code == "no_face"


@pytest.mark.parametrize("value", ["1,2,3", "a,b,c,d", "1,2,0,4", "1,2,3,-4", "inf,1,2,3", [1, 2, 3], [True, 1, 2, 3]])
def test_malformed_targets_are_refused(value):
    with pytest.raises(PydanticCustomError):
        parse_target_face(value)


def test_targets_read_as_text_or_numbers():
    assert parse_target_face(" 10, 20.5,30,40 ") == [10, 20.5, 30, 40]
    assert parse_target_face([10, 20, 30, 40]) == [10, 20, 30, 40]


def test_each_chosen_face_of_one_photo_has_its_own_source_hash():
    photo = "ab" * 32
    assert source_sha256(photo, None) == photo
    assert source_sha256(photo, [1, 2, 3, 4]) != source_sha256(photo, [5, 6, 7, 8]) != photo

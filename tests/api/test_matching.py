"""Gallery-scoped vector search against the real PostgreSQL + pgvector schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

from domain import matching
from domain.models import Face, Gallery, Organisation, Person

DIM = 512
MODEL = "test-model"


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _gallery(session, name: str) -> Gallery:
    organisation = Organisation(name=name)
    session.add(organisation)
    session.flush()
    gallery = Gallery(organisation_id=organisation.id, name=name)
    session.add(gallery)
    session.flush()
    return gallery


def _enroll(session, gallery: Gallery, name: str, embedding: np.ndarray) -> Person:
    person = Person(gallery_id=gallery.id, name=name, consent_at=datetime.now(UTC))
    session.add(person)
    session.flush()
    face = Face(person_id=person.id, gallery_id=gallery.id, embedding=embedding, model=MODEL, det_score=0.9, bbox=[])
    session.add(face)
    return person


@pytest.fixture()
def crowded_table(db):
    """Gallery `crowd` holds 300 near-copies of the query face; gallery `mine` holds one person
    who resembles it less. Searched through HNSW alone, the crowd fills every slot."""
    rng = np.random.default_rng(0)
    query = _unit(rng.standard_normal(DIM))
    crowd = _gallery(db, "crowd")
    for i in range(300):
        _enroll(db, crowd, f"lookalike {i}", _unit(query + rng.standard_normal(DIM) * 0.02))
    mine = _gallery(db, "mine")
    other = _unit(rng.standard_normal(DIM))
    target = _enroll(db, mine, "the person", _unit(query + 0.8 * other))  # cosine about 0.78
    db.flush()
    # Only the HNSW index can serve the search now (DDL is transactional: the fixture rolls it back).
    db.execute(text("DROP INDEX ix_faces_gallery_model"))
    db.execute(text("DROP INDEX ix_faces_gallery_source"))
    db.execute(text("SET LOCAL enable_seqscan = off"))
    return db, query, mine, target


def _search(session, gallery: Gallery, query: np.ndarray, **overrides):
    options = {"top_k": 3, "threshold": 0.3, "ef_search": 64, "exact_max_faces": 20_000, **overrides}
    return matching.search(session, gallery_id=gallery.id, model=MODEL, embedding=query, **options)


def test_a_gallery_outranked_by_others_still_finds_its_person(crowded_table):
    session, query, mine, target = crowded_table
    plain_hnsw = session.execute(
        matching._CANDIDATES,
        {"query": matching.vector_literal(query), "gallery_id": mine.id, "model": MODEL, "candidates": 12},
    ).all()
    assert plain_hnsw == []  # the HNSW scan alone: the crowd took all ef_search slots
    matches = _search(session, mine, query)
    assert [m.person_id for m in matches] == [target.id]
    assert 0.7 < matches[0].similarity < 0.85


def test_a_large_gallery_left_short_widens_the_hnsw_scan_then_searches_exactly(crowded_table):
    session, query, mine, target = crowded_table
    matches = _search(session, mine, query, exact_max_faces=0)  # "too large" for the exact path first
    assert [m.person_id for m in matches] == [target.id]


def test_matches_are_one_per_person_best_face_first_and_above_the_threshold(db):
    rng = np.random.default_rng(1)
    query = _unit(rng.standard_normal(DIM))
    gallery = _gallery(db, "ranked")
    best_face = _unit(query + 0.3 * _unit(rng.standard_normal(DIM)))
    near = _enroll(db, gallery, "near", best_face)
    worse_face = _unit(query + 0.6 * _unit(rng.standard_normal(DIM)))
    db.add(Face(person_id=near.id, gallery_id=gallery.id, embedding=worse_face, model=MODEL, det_score=0.9, bbox=[]))
    middle = _enroll(db, gallery, "middle", _unit(query + 0.9 * _unit(rng.standard_normal(DIM))))
    _enroll(db, gallery, "stranger", _unit(rng.standard_normal(DIM)))
    db.flush()
    matches = _search(db, gallery, query, threshold=0.4)
    assert [m.person_id for m in matches] == [near.id, middle.id]
    assert matches[0].similarity == pytest.approx(float(query @ best_face), abs=1e-4)  # its best face decides
    assert matches[0].similarity > matches[1].similarity >= 0.4


def test_a_small_gallery_counted_earlier_still_finds_people_enrolled_since(db):
    """The worker remembers that the gallery is small and searches it exactly in one query; the
    remembered count is only a hint, so people enrolled after it was taken are found too."""
    rng = np.random.default_rng(2)
    gallery = _gallery(db, "small")
    first_face = _unit(rng.standard_normal(DIM))
    first = _enroll(db, gallery, "first", first_face)
    db.flush()
    assert [m.person_id for m in _search(db, gallery, first_face)] == [first.id]
    assert matching._known_gallery_size((gallery.id, MODEL), 30.0) == 1

    newcomers = {}
    for i in range(15):  # more faces than the 12 candidates that top_k 3 asks for
        face = _unit(rng.standard_normal(DIM))
        newcomers[_enroll(db, gallery, f"newcomer {i}", face).id] = face
    db.flush()
    for person_id, face in newcomers.items():
        assert [m.person_id for m in _search(db, gallery, face)][:1] == [person_id]
    assert _search(db, gallery, first_face, size_cache_seconds=0)[0].person_id == first.id


def test_a_small_gallerys_face_count_is_never_stale(db):
    """Enroll a team, then recognize it: the threshold and `gallery_faces` count everyone already
    (only a large gallery's count is remembered for GALLERY_SIZE_CACHE_SECONDS)."""
    from domain.matching import gallery_face_count

    gallery = _gallery(db, f"fresh-{uuid.uuid4().hex[:6]}")
    assert gallery_face_count(db, gallery.id, MODEL, max_age=30) == 0
    _enroll(db, gallery, "Ada", _unit(np.random.default_rng(1).normal(size=DIM)))
    db.flush()
    assert gallery_face_count(db, gallery.id, MODEL, max_age=30) == 1

"""Vector search inside PostgreSQL: pgvector's HNSW index, scoped to a gallery and a model."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Faces fetched from the index per requested person: a person with several faces can
# occupy several candidate rows, and we return one row per person (its best face).
CANDIDATES_PER_RESULT = 4
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper limit for hnsw.ef_search

_CANDIDATES = text(
    """
    SELECT person_id, embedding <=> CAST(:query AS vector) AS distance
    FROM faces
    WHERE gallery_id = :gallery_id AND model = :model
    ORDER BY embedding <=> CAST(:query AS vector)
    LIMIT :candidates
    """
)
# The gallery's faces first (through the btree), then an exact sort: never the HNSW index.
_EXACT_CANDIDATES = text(
    """
    WITH gallery AS MATERIALIZED (
        SELECT person_id, embedding FROM faces WHERE gallery_id = :gallery_id AND model = :model
    )
    SELECT person_id, embedding <=> CAST(:query AS vector) AS distance
    FROM gallery
    ORDER BY distance
    LIMIT :candidates
    """
)
_GALLERY_SIZE_UP_TO = text(
    "SELECT count(*) FROM (SELECT 1 FROM faces WHERE gallery_id = :gallery_id AND model = :model LIMIT :limit) s"
)
_SEARCH_SETTINGS = text(
    "SELECT set_config('hnsw.ef_search', :ef, true), set_config('plan_cache_mode', 'force_custom_plan', true)"
)
_GALLERY_FACES = text("SELECT count(*) FROM faces WHERE gallery_id = :gallery_id AND model = :model")
_PERSONS = text("SELECT id, name, external_id, metadata FROM persons WHERE id = ANY(:ids)")

# Gallery sizes this process counted recently: (gallery_id, model) -> (faces, when). Only the
# choice of path reads them, and every path returns a correct answer, so an entry gone stale
# (the gallery grew or shrank since) costs time, never a wrong result.
_gallery_sizes: dict[tuple[uuid.UUID, str], tuple[int, float]] = {}
_GALLERY_SIZES_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Match:
    person_id: uuid.UUID
    name: str
    similarity: float
    external_id: str | None = None
    metadata: dict | None = None

    def as_dict(self) -> dict:
        return {
            "person_id": str(self.person_id),
            "name": self.name,
            "external_id": self.external_id,
            "metadata": self.metadata or {},
            "similarity": round(self.similarity, 4),
        }


def vector_literal(embedding: np.ndarray) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in embedding.tolist()) + "]"


def search(
    session: Session,
    *,
    gallery_id: uuid.UUID,
    model: str,
    embedding: np.ndarray,
    top_k: int,
    threshold: float,
    ef_search: int,
    exact_max_faces: int = 20_000,
    size_cache_seconds: float = 30.0,
) -> list[Match]:
    """The best-matching persons, best first, each at or above `threshold` cosine similarity.

    The HNSW index covers every gallery, and pgvector (0.6) applies the gallery filter after
    its scan: of the `ef_search` nearest faces in the whole table only the gallery's survive.
    A gallery that holds a small share of the table, or whose faces are outranked by other
    galleries' (the same celebrity enrolled by many tenants), gets fewer candidates than asked
    for, possibly none. When that happens the search is redone exactly inside the gallery if it
    holds at most `exact_max_faces` faces, else through HNSW at its widest, and exactly as a
    last resort: slower, never wrong (bench/results/db_*.json measure both paths).

    A gallery counted within `size_cache_seconds` and found to hold fewer faces than the
    candidates wanted goes straight to the exact search: one query instead of three.
    """
    candidates = top_k * CANDIDATES_PER_RESULT
    params = {"query": vector_literal(embedding), "gallery_id": gallery_id, "model": model, "candidates": candidates}
    known_size = _known_gallery_size((gallery_id, model), size_cache_seconds)
    if known_size is not None and known_size < candidates:
        rows = session.execute(_EXACT_CANDIDATES, params).all()
    else:
        rows = _hnsw_candidates(session, params, max(ef_search, candidates))
        if len(rows) < candidates:
            rows = _complete_candidates(session, params, exact_max_faces)
    best: dict[uuid.UUID, float] = {}
    for person_id, distance in rows:
        best[person_id] = min(distance, best.get(person_id, distance))
    ranked = sorted(((1.0 - d, p) for p, d in best.items() if 1.0 - d >= threshold), reverse=True)[:top_k]
    if not ranked:
        return []
    persons = {row[0]: row[1:] for row in session.execute(_PERSONS, {"ids": [p for _, p in ranked]}).all()}
    matches = []
    for similarity, person_id in ranked:
        if person_id in persons:  # a person deleted since the candidates were read is left out
            name, external_id, metadata = persons[person_id]
            matches.append(Match(person_id, name, float(similarity), external_id, metadata))
    return matches


def _hnsw_candidates(session: Session, params: dict, ef_search: int) -> list:
    # A custom plan sees the gallery id itself, so the planner can prove a gallery's own index
    # applies (domain.gallery_indexes); a generic plan of a prepared statement could not.
    session.execute(_SEARCH_SETTINGS, {"ef": str(ef_search)})
    return session.execute(_CANDIDATES, params).all()


def _complete_candidates(session: Session, params: dict, exact_max_faces: int) -> list:
    """Candidates for a gallery that the first HNSW scan left short (see `search`)."""
    limit = {"limit": exact_max_faces + 1}
    gallery_faces = session.execute(_GALLERY_SIZE_UP_TO, {**params, **limit}).scalar_one()
    _remember_gallery_size((params["gallery_id"], params["model"]), gallery_faces)
    if gallery_faces > exact_max_faces:
        rows = _hnsw_candidates(session, params, HNSW_MAX_EF_SEARCH)
        if len(rows) >= params["candidates"]:
            return rows
        log.warning("gallery %s: HNSW found too few of its faces; exact search", params["gallery_id"])
    return session.execute(_EXACT_CANDIDATES, params).all()


def _known_gallery_size(key: tuple[uuid.UUID, str], max_age: float) -> int | None:
    entry = _gallery_sizes.get(key)
    if entry is None or time.monotonic() - entry[1] > max_age:
        return None
    return entry[0]


def _remember_gallery_size(key: tuple[uuid.UUID, str], faces: int) -> None:
    if len(_gallery_sizes) >= _GALLERY_SIZES_MAX_ENTRIES:
        _gallery_sizes.clear()
    _gallery_sizes[key] = (faces, time.monotonic())


_face_counts: dict[tuple[uuid.UUID, str], tuple[int, float]] = {}
COUNT_CACHE_MIN_FACES = 10_000


def forget_gallery_size(gallery_id: uuid.UUID, model: str) -> None:
    """This process's counts of the gallery are out of date (it has just added a face to it)."""
    _face_counts.pop((gallery_id, model), None)
    _gallery_sizes.pop((gallery_id, model), None)


def gallery_face_count(session: Session, gallery_id: uuid.UUID, model: str, max_age: float) -> int:
    """Every face of `model` in the gallery: the N of the open-set threshold (domain/openset.py).
    Counted at most once per `max_age` seconds per process (a count of a 1M-face gallery takes
    tens of milliseconds); a gallery grown since gets a threshold a little low until then."""
    key = (gallery_id, model)
    entry = _face_counts.get(key)
    # Only a large gallery's count is worth remembering: a small one's is an index count of a few
    # milliseconds, and a remembered one would hide the persons enrolled a moment ago (a newcomer
    # enrolling a team, then recognizing it, read "0 faces" for up to GALLERY_SIZE_CACHE_SECONDS).
    if entry is not None and entry[0] >= COUNT_CACHE_MIN_FACES and time.monotonic() - entry[1] <= max_age:
        return entry[0]
    count = session.execute(_GALLERY_FACES, {"gallery_id": gallery_id, "model": model}).scalar_one()
    if len(_face_counts) >= _GALLERY_SIZES_MAX_ENTRIES:
        _face_counts.clear()
    _face_counts[key] = (count, time.monotonic())
    _remember_gallery_size(key, count)  # a full count serves the choice of search path too
    return count

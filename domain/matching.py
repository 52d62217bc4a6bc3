"""Vector search inside PostgreSQL: pgvector's HNSW index, scoped to a gallery and a model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

# Faces fetched from the index per requested person: a person with several faces can
# occupy several candidate rows, and we return one row per person (its best face).
CANDIDATES_PER_RESULT = 4

_SEARCH = text(
    """
    WITH candidates AS (
        SELECT person_id, embedding <=> CAST(:query AS vector) AS distance
        FROM faces
        WHERE gallery_id = :gallery_id AND model = :model
        ORDER BY embedding <=> CAST(:query AS vector)
        LIMIT :candidates
    )
    SELECT c.person_id, p.name, 1 - min(c.distance) AS similarity
    FROM candidates c JOIN persons p ON p.id = c.person_id
    GROUP BY c.person_id, p.name
    HAVING 1 - min(c.distance) >= :threshold
    ORDER BY similarity DESC
    LIMIT :top_k
    """
)


@dataclass(frozen=True)
class Match:
    person_id: uuid.UUID
    name: str
    similarity: float

    def as_dict(self) -> dict:
        return {"person_id": str(self.person_id), "name": self.name, "similarity": round(self.similarity, 4)}


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
) -> list[Match]:
    """The best-matching persons, best first, each at or above `threshold` cosine similarity."""
    candidates = top_k * CANDIDATES_PER_RESULT
    # HNSW returns at most ef_search rows, so it must cover the candidates we ask for.
    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(ef_search, candidates))})
    rows = session.execute(
        _SEARCH,
        {
            "query": vector_literal(embedding),
            "gallery_id": gallery_id,
            "model": model,
            "candidates": candidates,
            "threshold": threshold,
            "top_k": top_k,
        },
    )
    return [Match(row.person_id, row.name, float(row.similarity)) for row in rows]

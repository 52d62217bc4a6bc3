"""Per-gallery HNSW indexes: a large gallery gets a graph of its own.

pgvector (0.6) applies the gallery filter after its index scan. In a table of ten galleries, a
search of one gallery through the global index gets about a tenth of its `ef_search`
candidates, and its recall falls with the table's size, not the gallery's. A partial index
`WHERE gallery_id = g AND model = m` (what pgvector's README advises for filtering on a few
values) holds only that gallery's faces: the search walks a graph of the gallery's size. At 1M
faces in ten galleries this is what reaches recall@1 0.99 within 10 ms
(bench/results/db_spectrum_1m_gallery.json, PERFORMANCE.md).

These indexes follow the data, as partitions would: `sync` (a periodic task, and
`python -m stack.cli gallery-indexes`) creates one for each gallery with at least
`GALLERY_INDEX_MIN_FACES` faces of a model, and drops it once the gallery falls below half of
that or is deleted. They are the only schema objects made outside migrations; their names start
with `ix_faces_hnsw_g_` and nothing depends on them. Builds run CONCURRENTLY, one at a time
(an advisory lock), so enrollments and searches go on meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

PREFIX = "ix_faces_hnsw_g_"
_PATTERN = PREFIX.replace("_", r"\_") + "%"  # for LIKE
_LOCK_KEY = 7_310_584_221_905_373_001  # pg advisory lock: one sync at a time across hosts
# 100k-face graphs built so reach recall@1 0.99 at ef_search 40 (PERFORMANCE.md), at half the
# build time of the global index's m 24 / ef_construction 100.
M, EF_CONSTRUCTION = 16, 64
_SAFE_MODEL = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")  # model names go into the index predicate

_GALLERY_SIZES = text(
    "SELECT gallery_id, model, count(*) FROM faces GROUP BY gallery_id, model HAVING count(*) >= :at_least"
)
_OURS = text(
    "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE c.relname LIKE :pattern"
)


def building(connection: Connection) -> bool:
    """Whether one of these indexes is being built now (it holds a worker process for minutes)."""
    progress = text(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid "
        "WHERE c.relname LIKE :pattern)"
    )
    return bool(connection.execute(progress, {"pattern": _PATTERN}).scalar_one())


def index_name(gallery_id: uuid.UUID, model: str) -> str:
    return PREFIX + hashlib.sha256(f"{gallery_id}:{model}".encode()).hexdigest()[:32]


def plan(connection: Connection, min_faces: int) -> tuple[dict[str, tuple[uuid.UUID, str]], list[str]]:
    """(indexes to build: name -> (gallery, model), indexes to drop). A gallery keeps its index
    down to half of `min_faces`, so one that hovers at the threshold is not rebuilt again and again."""
    sizes = connection.execute(_GALLERY_SIZES, {"at_least": max(1, min_faces // 2)}).all()
    keep = {index_name(g, m) for g, m, _ in sizes}
    wanted = {index_name(g, m): (g, m) for g, m, faces in sizes if faces >= min_faces and _SAFE_MODEL.match(m)}
    existing = dict(connection.execute(_OURS, {"pattern": _PATTERN}).all())
    # An invalid index is what a build cut short leaves: dropped, and built again if still wanted.
    drop = [name for name, valid in existing.items() if name not in keep or not valid]
    build = {name: target for name, target in wanted.items() if not existing.get(name)}
    return build, drop


def sync(
    engine: Engine, *, min_faces: int, build_memory: str, m: int = M, ef_construction: int = EF_CONSTRUCTION
) -> dict[str, int]:
    """Build the missing per-gallery indexes and drop the unneeded ones; returns the counts
    (`skipped` 1 when another sync holds the lock)."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")  # CONCURRENTLY needs it
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY}).scalar_one():
            return {"built": 0, "dropped": 0, "skipped": 1}
        try:
            build, drop = plan(connection, min_faces)
            for name in drop:
                connection.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
            connection.execute(
                text("SELECT set_config('maintenance_work_mem', :memory, false)"), {"memory": build_memory}
            )
            for name, (gallery_id, model) in build.items():
                log.info("building %s for gallery %s, model %s", name, gallery_id, model)
                connection.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
                connection.execute(
                    text(
                        f'CREATE INDEX CONCURRENTLY "{name}" ON faces USING hnsw (embedding vector_cosine_ops) '
                        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
                        f"WHERE gallery_id = '{uuid.UUID(str(gallery_id))}' AND model = '{model}'"
                    )
                )
            return {"built": len(build), "dropped": len(drop), "skipped": 0}
        finally:  # the connection goes back to the pool: leave it as it was found
            connection.execute(text("RESET maintenance_work_mem"))
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})

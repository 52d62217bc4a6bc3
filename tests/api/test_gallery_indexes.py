"""Per-gallery HNSW indexes (domain.gallery_indexes) on the real PostgreSQL + pgvector."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import delete, select, text

from domain import gallery_indexes, matching
from domain.db import get_engine, session_scope
from domain.models import Account, Gallery, Job
from tests.api.test_matching import DIM, MODEL, _enroll, _gallery, _unit
from tests.conftest import make_account, stored_job

GALLERY_FACES = 40


def _sync(min_faces: int) -> dict[str, int]:
    return gallery_indexes.sync(get_engine(), min_faces=min_faces, build_memory="64MB")


def _our_indexes(session) -> dict[str, str]:
    rows = session.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'ix_faces_hnsw_g_%'"))
    return dict(rows.all())


@pytest.fixture()
def crowd_and_mine(services):
    """Committed (indexes are built CONCURRENTLY, outside any transaction): gallery `crowd` holds
    300 near-copies of the query face; gallery `mine` holds 40 people, one of whom resembles the
    query less than the whole crowd does."""
    rng = np.random.default_rng(1)
    query = _unit(rng.standard_normal(DIM))
    with session_scope() as session:
        crowd = _gallery(session, "crowd")
        for i in range(300):
            _enroll(session, crowd, f"lookalike {i}", _unit(query + rng.standard_normal(DIM) * 0.02))
        mine = _gallery(session, "mine")
        target = _enroll(session, mine, "the person", _unit(query + 0.8 * _unit(rng.standard_normal(DIM))))
        for i in range(GALLERY_FACES - 1):
            _enroll(session, mine, f"stranger {i}", _unit(rng.standard_normal(DIM)))
        ids = (crowd.id, mine.id, target.id)
    yield query, *ids
    with session_scope() as session:
        session.execute(delete(Gallery).where(Gallery.id.in_(ids[:2])))
    _sync(10**9)  # drops every per-gallery index left


def _first_pass(session, query, gallery_id) -> tuple[list, str]:
    """The service's first (HNSW) query and its plan, with only HNSW indexes to choose from
    (the caller rolls this DDL back)."""
    session.execute(text("DROP INDEX ix_faces_gallery_model"))
    session.execute(text("DROP INDEX ix_faces_gallery_source"))
    session.execute(text("SET LOCAL enable_seqscan = off"))
    params = {"query": matching.vector_literal(query), "gallery_id": gallery_id, "model": MODEL, "candidates": 12}
    rows = matching._hnsw_candidates(session, params, 64)
    plan = "\n".join(r[0] for r in session.execute(text("EXPLAIN " + matching._CANDIDATES.text), params))
    return rows, plan


def test_a_large_gallery_gets_its_own_index_and_its_search_no_longer_loses_to_other_galleries(crowd_and_mine):
    query, crowd_id, mine_id, target_id = crowd_and_mine
    with session_scope() as session:
        rows, plan = _first_pass(session, query, mine_id)
        session.rollback()
    assert rows == [] and "ix_faces_embedding_hnsw" in plan  # the global graph: the crowd took every slot

    counts = _sync(GALLERY_FACES)
    with session_scope() as session:
        built = _our_indexes(session)
        name = gallery_indexes.index_name(mine_id, MODEL)
        assert name in built and str(mine_id) in built[name] and counts["built"] >= 2  # mine and the crowd
        rows, plan = _first_pass(session, query, mine_id)
        session.rollback()
    assert name in plan
    assert len(rows) == 12 and rows[0][0] == target_id  # the gallery's own graph: its best match first


def test_a_gallery_that_shrinks_or_goes_loses_its_index(crowd_and_mine):
    query, crowd_id, mine_id, _ = crowd_and_mine
    _sync(GALLERY_FACES)
    with session_scope() as session:
        assert gallery_indexes.index_name(crowd_id, MODEL) in _our_indexes(session)
        session.execute(delete(Gallery).where(Gallery.id == crowd_id))  # its faces go with it
    assert _sync(GALLERY_FACES)["dropped"] >= 1
    with session_scope() as session:
        names = _our_indexes(session)
    assert gallery_indexes.index_name(crowd_id, MODEL) not in names
    assert gallery_indexes.index_name(mine_id, MODEL) in names  # 40 faces: still at the threshold
    # Half the threshold keeps an index (no rebuild churn at the edge); below it, it goes.
    assert gallery_indexes.index_name(mine_id, MODEL) in _after_sync(2 * GALLERY_FACES)
    assert gallery_indexes.index_name(mine_id, MODEL) not in _after_sync(2 * GALLERY_FACES + 2)


def _after_sync(min_faces: int) -> dict[str, str]:
    _sync(min_faces)
    with session_scope() as session:
        return _our_indexes(session)


def test_an_index_a_crashed_build_left_invalid_is_rebuilt_by_the_admin_command(crowd_and_mine, capsys):
    from stack import cli

    _, _, mine_id, _ = crowd_and_mine
    _sync(GALLERY_FACES)
    name = gallery_indexes.index_name(mine_id, MODEL)
    with session_scope() as session:  # what an interrupted CREATE INDEX CONCURRENTLY leaves
        session.execute(text(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"{name}\"'::regclass"))
    assert cli.main(["gallery-indexes", "--min-faces", str(GALLERY_FACES)]) == 0
    assert "1 built" in capsys.readouterr().out
    with session_scope() as session:
        valid = session.execute(text(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '\"{name}\"'::regclass"))
        assert valid.scalar_one() is True


def test_a_build_in_progress_is_seen_so_the_watchdog_does_not_take_it_for_a_stall(crowd_and_mine):
    """A writer's open transaction holds the concurrent build in its first phase: long enough to look."""
    from concurrent.futures import ThreadPoolExecutor

    from stack.run import queue_stalled

    _, crowd_id, _, _ = crowd_and_mine
    with session_scope() as session:  # a job waiting, and (since 0 s ago) none started: a stall but for the build
        owner = session.execute(select(Account.id).where(Account.email == make_account("operator")[0])).scalar_one()
        job = stored_job(session, owner)
        session.flush()
        job_id = job.id
    assert queue_stalled(0) is True
    with get_engine().connect() as watcher, get_engine().connect() as writer, ThreadPoolExecutor(1) as pool:
        writer.execute(text("LOCK TABLE faces IN ROW EXCLUSIVE MODE"))  # what an enrollment holds
        try:
            sync = pool.submit(_sync, GALLERY_FACES)
            deadline = time.monotonic() + 30
            while not gallery_indexes.building(watcher) and time.monotonic() < deadline:
                watcher.rollback()
                time.sleep(0.1)
            assert gallery_indexes.building(watcher)
            assert queue_stalled(0) is False  # whatever the queue, a build in progress is not a stall
        finally:  # the build also waits for every older snapshot: end both transactions
            writer.rollback()
            watcher.rollback()
        assert sync.result(timeout=60)["built"] >= 1
        assert not gallery_indexes.building(watcher)
    with session_scope() as session:
        session.execute(delete(Job).where(Job.id == job_id))

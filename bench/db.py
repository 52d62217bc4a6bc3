"""Vector search benchmark: NumPy over fetched rows vs pgvector exact scan vs pgvector HNSW.

    python -m bench.db [--sizes 10000,100000,1000000] [--queries 200]

Runs a throwaway embedded PostgreSQL + pgvector (pgserver) in a temporary directory, creates a
faces-like table (id, person_id, gallery_id uuid, embedding vector(512)) per size, loads
clustered synthetic L2-normalised embeddings with a binary COPY, and measures:

  (a) naive: fetch every embedding (of the table, or of one gallery) into Python, NumPy dot
      product, top-k (timed including the fetch);
  (b) exact: `ORDER BY embedding <=> q LIMIT k` without an ANN index (sequential scan);
  (c) HNSW (vector_cosine_ops; --indexes m:ef_construction variants, default 16:64 as in
      migration 0001, which 0007 raised to 24:100): build time,
      index size, and an ef_search sweep with p50/p95 latency, recall@1 and recall@10 against
      the exact answer;
  and gallery scoping (10 galleries, `WHERE gallery_id = g`): HNSW post-filtering vs exact.

Results: bench/results/db_results.json, db_results.csv, db_results.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench.common import RESULTS_DIR, machine_info, percentiles_ms, write_csv, write_json
from bench.spectrum import sample as sample_spectrum
from bench.spectrum import within_noise

log = logging.getLogger("bench.db")

DIM = 512
K = 10
N_GALLERIES = 10
FACES_PER_PERSON = 5  # on average (Poisson-like assignment of faces to persons)
FACE_NOISE = 1.2  # norm of the per-face deviation from its person's centre (intra-person cos ~0.4)
QUERY_NOISE = 0.75  # norm of the deviation of a query from the stored face it was drawn from
ISOTROPIC_NOISE = 0.2  # norm of the full-dimensional residual added when --latent-dim < 512
EF_SWEEP = (10, 20, 40, 64, 100, 200)
EF_SCOPED = (40, 64, 100, 200, 400)
HNSW_M = 16
SQL_ALL = "SELECT id FROM faces ORDER BY embedding <=> %s LIMIT %s"
SQL_GALLERY = "SELECT id FROM faces WHERE gallery_id = %s ORDER BY embedding <=> %s LIMIT %s"
HNSW_EF_CONSTRUCTION = 64


# ---------------------------------------------------------------- synthetic data


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _basis(latent_dim: int, seed: int = 7) -> np.ndarray:
    """Orthonormal rows spanning a random `latent_dim`-dimensional subspace of R^512."""
    if latent_dim >= DIM:
        return np.eye(DIM, dtype=np.float32)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, latent_dim)))
    return np.ascontiguousarray(q.T, dtype=np.float32)


def _structured_noise(rng, rows: int, basis: np.ndarray, norm: float) -> np.ndarray:
    """Noise of about `norm` inside the latent subspace plus a small isotropic residual."""
    d = basis.shape[0]
    noise = (rng.standard_normal((rows, d), dtype=np.float32) * (norm / np.sqrt(d))) @ basis
    if d < DIM:
        noise += rng.standard_normal((rows, DIM), dtype=np.float32) * (ISOTROPIC_NOISE / np.sqrt(DIM))
    return noise


def make_dataset(n: int, latent_dim: int = DIM, seed: int = 0, spectrum: dict | None = None) -> dict:
    """Clustered embeddings: person centres plus per-face noise; persons spread over galleries.

    With latent_dim < 512 centres and per-face variation live in a random latent_dim-dimensional
    subspace (plus a small isotropic residual), and HNSW's recall depends on that dimension.
    latent_dim = 512 is the isotropic worst case. (Real ArcFace embeddings measure about 160-220
    effective dimensions, bench/results/lfw_spectrum.json: prefer `spectrum`.) With `spectrum`
    (bench.spectrum's model fitted on real LFW embeddings) centres and per-face deviations
    follow the real covariances instead, and latent_dim is unused.
    """
    rng = np.random.default_rng(seed)
    if spectrum is not None:
        emb, person, centres = sample_spectrum(spectrum, n, FACES_PER_PERSON, rng)
        return _with_galleries(rng, emb, person, {"centres": centres, "spectrum": spectrum})
    basis = _basis(latent_dim)
    n_persons = max(1, n // FACES_PER_PERSON)
    centres = _normalise(rng.standard_normal((n_persons, basis.shape[0]), dtype=np.float32)) @ basis
    person = rng.integers(0, n_persons, size=n)
    person[:n_persons] = np.arange(n_persons)[: min(n, n_persons)]  # every person has a face
    emb = np.empty((n, DIM), dtype=np.float32)
    chunk = 100_000
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        emb[start:stop] = centres[person[start:stop]] + _structured_noise(rng, stop - start, basis, FACE_NOISE)
    _normalise(emb)
    return _with_galleries(rng, emb, person, {"basis": basis})


def _with_galleries(rng, emb: np.ndarray, person: np.ndarray, extra: dict) -> dict:
    """Every person in one of N_GALLERIES galleries."""
    gallery_of_person = rng.integers(0, N_GALLERIES, size=int(person.max()) + 1)
    gallery_ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i) for i in range(N_GALLERIES)]
    return {
        "embeddings": emb,
        "person": person.astype(np.int64),
        "gallery": gallery_of_person[person],
        "gallery_ids": gallery_ids,
        **extra,
    }


def make_queries(data: dict, n_queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Queries and the stored face each comes from.

    Latent model: the stored face plus noise. Spectrum model: a new photo of the stored face's
    person (their centre plus a fresh deviation), as a recognize request is.
    """
    rng = np.random.default_rng(seed)
    source = rng.choice(len(data["embeddings"]), size=n_queries, replace=False)
    if "spectrum" in data:
        centres = data["centres"][data["person"][source]]
        return _normalise(centres + within_noise(data["spectrum"], n_queries, rng)), source
    noise = _structured_noise(rng, n_queries, data["basis"], QUERY_NOISE)
    return _normalise(data["embeddings"][source] + noise), source


def exact_topk(emb: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Ground truth ids (row numbers) by cosine similarity, best first; -1 pads short answers."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    if mask is None:
        for b in range(0, len(queries), 20):
            sims = emb @ queries[b : b + 20].T
            top = np.argpartition(-sims, k - 1, axis=0)[:k].T
            for j, t in enumerate(top):
                out[b + j] = t[np.argsort(-sims[t, j])]
        return out
    for i, q in enumerate(queries):
        if mask is None:
            sims, ids = emb @ q, None
        else:
            ids = np.flatnonzero(mask[i])
            sims = emb[ids] @ q
        kk = min(k, len(sims))
        top = np.argpartition(-sims, kk - 1)[:kk]
        top = top[np.argsort(-sims[top])]
        out[i, :kk] = top if ids is None else ids[top]
    return out


def recall(found: list[list[int]], truth: np.ndarray) -> tuple[float, float]:
    r1 = np.mean([bool(f) and f[0] == t[0] for f, t in zip(found, truth, strict=True)])
    r10 = np.mean(
        [
            len(set(f[:K]) & {x for x in t[:K] if x >= 0}) / max(1, int((t[:K] >= 0).sum()))
            for f, t in zip(found, truth, strict=True)
        ]
    )
    return round(float(r1), 4), round(float(r10), 4)


# ---------------------------------------------------------------- loading


def copy_binary(conn: psycopg.Connection, data: dict, chunk: int = 50_000) -> float:
    """Bulk load with COPY ... (FORMAT BINARY), the rows built as one NumPy record array per chunk."""
    row = np.dtype(
        [
            ("nfields", ">i2"),
            ("l_id", ">i4"),
            ("id", ">i8"),
            ("l_person", ">i4"),
            ("person", ">i8"),
            ("l_gallery", ">i4"),
            ("gallery", "V16"),
            ("l_emb", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("emb", ">f4", (DIM,)),
        ]
    )
    gallery_bytes = np.array([g.bytes for g in data["gallery_ids"]], dtype="V16")
    emb, n = data["embeddings"], len(data["embeddings"])
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy("COPY faces (id, person_id, gallery_id, embedding) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            rec = np.empty(stop - start, dtype=row)
            rec["nfields"], rec["l_id"], rec["l_person"], rec["l_gallery"] = 4, 8, 8, 16
            rec["l_emb"], rec["dim"], rec["unused"] = 4 + 4 * DIM, DIM, 0
            rec["id"] = np.arange(start, stop)
            rec["person"] = data["person"][start:stop]
            rec["gallery"] = gallery_bytes[data["gallery"][start:stop]]
            rec["emb"] = emb[start:stop]
            cp.write(rec.tobytes())
        cp.write((-1).to_bytes(2, "big", signed=True))
    return time.perf_counter() - started


# ---------------------------------------------------------------- measurements


def run_queries(conn, sql: str, queries: np.ndarray, params_of, warmup: int = 5) -> tuple[list[float], list[list[int]]]:
    times, found = [], []
    with conn.cursor() as cur:
        for q in queries[:warmup]:
            cur.execute(sql, params_of(0, q), prepare=True).fetchall()
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            rows = cur.execute(sql, params_of(i, q), prepare=True).fetchall()
            times.append(time.perf_counter() - t0)
            found.append([r[0] for r in rows])
    return times, found


def naive_search(conn, queries: np.ndarray, gallery: uuid.UUID | None) -> tuple[list[float], list[list[int]]]:
    """What an application without vector search would do: load the gallery, then NumPy."""
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        with conn.cursor(binary=True) as cur:
            if gallery is None:
                cur.execute("SELECT id, embedding FROM faces")
            else:
                cur.execute("SELECT id, embedding FROM faces WHERE gallery_id = %s", (gallery,))
            rows = cur.fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.stack([r[1].to_numpy() for r in rows])
        sims = mat @ q
        top = np.argpartition(-sims, K - 1)[:K]
        top = top[np.argsort(-sims[top])]
        times.append(time.perf_counter() - t0)
        found.append(ids[top].tolist())
    return times, found


def plan_of(conn, sql: str, params) -> str:
    with conn.cursor() as cur:
        rows = cur.execute("EXPLAIN " + sql, params).fetchall()
    return " | ".join(r[0].strip() for r in rows)


def setting(conn, name: str) -> str:
    return conn.execute(f"SHOW {name}").fetchone()[0]


def bench_size(conn, n: int, n_queries: int, rows: list[dict], args) -> dict:
    log.info("size %d: generating data", n)
    t0 = time.perf_counter()
    data = make_dataset(n, args.latent_dim, spectrum=args.spectrum_model)
    queries, source = make_queries(data, n_queries)
    gen_s = time.perf_counter() - t0
    emb = data["embeddings"]

    conn.execute("DROP TABLE IF EXISTS faces")
    conn.execute(
        "CREATE TABLE faces (id bigint PRIMARY KEY, person_id bigint NOT NULL, gallery_id uuid NOT NULL,"
        " embedding vector(512) NOT NULL)"
    )
    load_s = copy_binary(conn, data)
    t0 = time.perf_counter()
    conn.execute("CREATE INDEX ix_faces_gallery ON faces (gallery_id)")
    conn.execute("VACUUM ANALYZE faces")
    post_load_s = time.perf_counter() - t0
    log.info("size %d: loaded in %.1fs (COPY), pk+btree+vacuum %.1fs", n, load_s, post_load_s)

    truth = exact_topk(emb, queries, K)
    q_gallery = data["gallery"][source]
    gallery_uuid = [data["gallery_ids"][g] for g in q_gallery]
    mask = np.stack([data["gallery"] == g for g in q_gallery])
    truth_scoped = exact_topk(emb, queries, K, mask)
    self_hit = float(np.mean(truth[:, 0] == source))
    person_hit = float(np.mean(data["person"][truth[:, 0]] == data["person"][source]))

    result: dict = {
        "n": n,
        "queries": n_queries,
        "generate_s": round(gen_s, 2),
        "copy_load_s": round(load_s, 2),
        "copy_rows_per_s": round(n / load_s),
        "pk_btree_vacuum_s": round(post_load_s, 2),
        "query_source_is_exact_top1": round(self_hit, 4),
        "query_person_is_exact_top1_person": round(person_hit, 4),
    }

    person = data["person"]

    def record(method: str, scope: str, times, found, truth_, ef=None, extra=None):
        r1, r10 = recall(found, truth_)
        entry = {
            "n": n,
            "method": method,
            "scope": scope,
            "ef_search": ef,
            "queries": len(times),
            **percentiles_ms(times),
            "qps_1_client": round(len(times) / sum(times), 1),
            "recall_at_1": r1,
            "recall_at_10": r10,
            # What identification needs: the top face belongs to the person of the exact top face
            # (another photo of the right person counts; recall_at_1 wants the very same face).
            "person_recall_at_1": round(
                float(np.mean([bool(f) and person[f[0]] == person[t[0]] for f, t in zip(found, truth_, strict=True)])),
                4,
            ),
            "mean_rows_returned": round(float(np.mean([len(f) for f in found])), 2),
            **(extra or {}),
        }
        rows.append(entry)
        log.info(
            "n=%d %-14s %-7s ef=%-4s p50=%8.2fms p95=%8.2fms r@1=%.3f r@10=%.3f rows=%.1f",
            n, method, scope, ef, entry["p50_ms"], entry["p95_ms"], r1, r10, entry["mean_rows_returned"],
        )  # fmt: skip
        return entry

    # (a) naive: whole table and one gallery, timed including the fetch.
    n_naive = min(n_queries, max(3, int(2e5 / n)))
    t, f = naive_search(conn, queries[:n_naive], None)
    record("numpy_fetch_all", "all", t, f, truth[:n_naive])
    t, f = [], []
    for i in range(n_naive):
        ti, fi = naive_search(conn, queries[i : i + 1], gallery_uuid[i])
        t += ti
        f += fi
    record("numpy_fetch_all", "gallery", t, f, truth_scoped[:n_naive])

    # (b) exact scan (no ANN index exists yet).
    n_exact = min(n_queries, max(20, int(5e6 / n)))
    result["plan_exact_all"] = plan_of(conn, SQL_ALL, (queries[0], K))
    t, f = run_queries(conn, SQL_ALL, queries[:n_exact], lambda i, q: (q, K), warmup=2)
    record("pgvector_exact", "all", t, f, truth[:n_exact])
    result["plan_exact_gallery"] = plan_of(conn, SQL_GALLERY, (gallery_uuid[0], queries[0], K))
    t, f = run_queries(conn, SQL_GALLERY, queries[:n_exact], lambda i, q: (gallery_uuid[i], q, K), warmup=2)
    record("pgvector_exact", "gallery", t, f, truth_scoped[:n_exact])

    if args.gallery_index:
        _bench_gallery_indexes(conn, n, data, args, result, queries, truth_scoped, gallery_uuid, record)

    if n > args.hnsw_max_size:
        log.info("size %d: HNSW skipped (--hnsw-max-size %d)", n, args.hnsw_max_size)
        sizes = conn.execute(
            "SELECT pg_relation_size('faces'), pg_total_relation_size('faces'), pg_database_size(current_database())"
        ).fetchone()
        result.update(
            {
                "hnsw_skipped": True,
                "table_heap_bytes": sizes[0],
                "table_total_bytes_incl_toast_and_indexes": sizes[1],
                "database_bytes": sizes[2],
                "raw_float32_bytes": int(emb.nbytes),
            }
        )
        return result

    # (c) HNSW: each index variant (m, ef_construction) on the same rows and queries, one at a time.
    result["raw_float32_bytes"] = int(emb.nbytes)
    for m, ef_construction in args.indexes:
        _bench_index(conn, n, m, ef_construction, args, result, queries, truth, truth_scoped, gallery_uuid, record)
    return result


def _bench_gallery_indexes(conn, n, data, args, result, queries, truth_scoped, gallery_uuid, record):
    """One partial HNSW index per gallery (`WHERE gallery_id = g`), what the service builds for a
    large gallery (domain.gallery_indexes): a gallery-scoped query searches its own graph."""
    m, ef_construction = args.gallery_index
    label = f"gallery_m{m}_efc{ef_construction}"
    builds = []
    for number, gallery in enumerate(data["gallery_ids"]):
        t0 = time.perf_counter()
        conn.execute(
            f"CREATE INDEX ix_faces_hnsw_gallery_{number} ON faces USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {m}, ef_construction = {ef_construction}) WHERE gallery_id = '{gallery}'"
        )
        faces = int(np.sum(data["gallery"] == number))
        builds.append({"gallery_faces": faces, "build_s": round(time.perf_counter() - t0, 1)})
        log.info("size %d %s: gallery %d (%d faces) built in %.1fs", n, label, number, faces, builds[-1]["build_s"])
    conn.execute("ANALYZE faces")
    index_bytes = conn.execute(
        "SELECT sum(pg_relation_size(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname LIKE 'ix_faces_hnsw_gallery_%'"
    ).fetchone()[0]
    result["gallery_indexes"] = {
        "index": label,
        "m": m,
        "ef_construction": ef_construction,
        "builds": builds,
        "build_s_total": round(sum(b["build_s"] for b in builds), 1),
        "index_bytes_total": int(index_bytes),
    }
    # Prepared statements would switch to a generic plan, which cannot prove the partial index's
    # predicate: the service sets the same for its search.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.execute(f"SET hnsw.ef_search = {max(args.ef_scoped)}")
    run_queries(conn, SQL_GALLERY, queries, lambda i, q: (gallery_uuid[i], q, K), warmup=0)  # warm the graphs
    for ef in args.ef_scoped:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        plan = plan_of(conn, SQL_GALLERY, (gallery_uuid[0], queries[0], K))
        node = "gallery_hnsw" if "ix_faces_hnsw_gallery_" in plan else "other"
        t, f = run_queries(conn, SQL_GALLERY, queries, lambda i, q: (gallery_uuid[i], q, K))
        record("pgvector_gallery_hnsw", "gallery", t, f, truth_scoped, ef, {"plan": node, "index": label})
    result["plan_gallery_hnsw"] = plan_of(conn, SQL_GALLERY, (gallery_uuid[0], queries[0], K))
    for key in ("plan_cache_mode", "hnsw.ef_search"):
        conn.execute(f"RESET {key}")
    for number in range(len(data["gallery_ids"])):
        conn.execute(f"DROP INDEX ix_faces_hnsw_gallery_{number}")


def _bench_index(conn, n, m, ef_construction, args, result, queries, truth, truth_scoped, gallery_uuid, record):
    """Build one HNSW variant, sweep ef_search over the whole table and within a gallery, drop it."""
    label = f"m{m}_efc{ef_construction}"
    t0 = time.perf_counter()
    conn.execute(
        f"CREATE INDEX ix_faces_embedding_hnsw ON faces USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction})"
    )
    build_s = time.perf_counter() - t0
    conn.execute("ANALYZE faces")
    sizes = conn.execute(
        "SELECT pg_relation_size('faces'), pg_total_relation_size('faces'), "
        "pg_relation_size('ix_faces_embedding_hnsw'), pg_relation_size('ix_faces_gallery'), "
        "pg_relation_size('faces_pkey'), pg_database_size(current_database())"
    ).fetchone()
    built = {
        "index": label,
        "m": m,
        "ef_construction": ef_construction,
        "hnsw_build_s": round(build_s, 1),
        "hnsw_build_rows_per_s": round(n / build_s),
        "table_heap_bytes": sizes[0],
        "table_total_bytes_incl_toast_and_indexes": sizes[1],
        "hnsw_index_bytes": sizes[2],
        "gallery_btree_bytes": sizes[3],
        "pkey_bytes": sizes[4],
        "database_bytes": sizes[5],
    }
    result.setdefault("indexes", []).append(built)
    if len(result["indexes"]) == 1:  # the first variant's numbers also at the top level, as before
        result.update({k: v for k, v in built.items() if k not in ("index", "m", "ef_construction")})
    log.info("size %d %s: HNSW built in %.1fs, index %.1f MiB", n, label, build_s, sizes[2] / 2**20)

    result[f"plan_hnsw_all_{label}"] = plan_of(conn, SQL_ALL, (queries[0], K))
    # Read the whole graph into shared buffers first, so that the sweep's first ef is not the cold one.
    conn.execute(f"SET hnsw.ef_search = {max(args.ef_sweep)}")
    run_queries(conn, SQL_ALL, queries, lambda i, q: (q, K), warmup=0)
    tag = {"index": label}
    for ef in args.ef_sweep:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        t, f = run_queries(conn, SQL_ALL, queries, lambda i, q: (q, K))
        record("pgvector_hnsw", "all", t, f, truth, ef, tag)

    # Gallery scoping with the HNSW index: the planner's choice, then HNSW forced.
    for ef in args.ef_scoped:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        plan = plan_of(conn, SQL_GALLERY, (gallery_uuid[0], queries[0], K))
        node = "hnsw_postfilter" if "ix_faces_embedding_hnsw" in plan else "btree_then_exact_sort"
        t, f = run_queries(conn, SQL_GALLERY, queries, lambda i, q: (gallery_uuid[i], q, K))
        record("pgvector_planner", "gallery", t, f, truth_scoped, ef, {"plan": node, **tag})
    conn.execute("SET enable_bitmapscan = off")
    conn.execute("SET enable_seqscan = off")
    try:
        for ef in args.ef_scoped:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            plan = plan_of(conn, SQL_GALLERY, (gallery_uuid[0], queries[0], K))
            if "ix_faces_embedding_hnsw" not in plan:
                break
            t, f = run_queries(conn, SQL_GALLERY, queries, lambda i, q: (gallery_uuid[i], q, K))
            record("pgvector_hnsw", "gallery", t, f, truth_scoped, ef, {"plan": "hnsw_postfilter", **tag})
    finally:
        conn.execute("RESET enable_bitmapscan")
        conn.execute("RESET enable_seqscan")
    conn.execute("RESET hnsw.ef_search")
    conn.execute("DROP INDEX ix_faces_embedding_hnsw")


# ---------------------------------------------------------------- reporting


def targets(sizes: list[dict], rows: list[dict]) -> dict:
    out = {}
    for s in sizes:
        labels = [i["index"] for i in s.get("indexes", [])] or [None]
        for label in labels:
            key = str(s["n"]) if len(labels) == 1 else f"{s['n']} {label}"
            out[key] = _targets_of(s["n"], [r for r in rows if r.get("index") in (label, None)])
        if "gallery_indexes" in s:
            key = f"{s['n']} one gallery of {N_GALLERIES}, its own index"
            out[key] = _targets_of(s["n"], rows, method="pgvector_gallery_hnsw", scope="gallery")
    return out


def _targets_of(n: int, rows: list[dict], method: str = "pgvector_hnsw", scope: str = "all") -> dict:
    """The 1M targets for `method`'s sweep in `scope` (the whole table, or one gallery), against
    fetch + NumPy and the exact scan in the same scope."""

    def one(baseline: str) -> dict | None:
        return next((r for r in rows if r["n"] == n and r["method"] == baseline and r["scope"] == scope), None)

    def fastest(metric: str, floor: float) -> dict | None:
        ok = [r for r in hnsw if r[metric] >= floor]
        return min(ok, key=lambda r: r["p50_ms"]) if ok else None

    hnsw = [r for r in rows if r["n"] == n and r["method"] == method and r["scope"] == scope]
    naive, exact = one("numpy_fetch_all"), one("pgvector_exact")
    best, best10 = fastest("recall_at_1", 0.99), fastest("recall_at_10", 0.95)
    best_person = fastest("person_recall_at_1", 0.99) if all("person_recall_at_1" in r for r in hnsw) else None
    entry = {
        "lowest_ef_with_recall1_ge_0.99": best["ef_search"] if best else None,
        "lowest_ef_with_recall10_ge_0.95": best10["ef_search"] if best10 else None,
        "p50_ms_at_recall10_ge_0.95": best10["p50_ms"] if best10 else None,
        "lowest_ef_with_person_recall1_ge_0.99": best_person["ef_search"] if best_person else None,
        "p50_ms_at_person_recall1_ge_0.99": best_person["p50_ms"] if best_person else None,
    }
    if best:
        entry.update(
            {
                "hnsw_p50_ms": best["p50_ms"],
                "hnsw_p95_ms": best["p95_ms"],
                "p50_le_10ms": best["p50_ms"] <= 10,
                "speedup_vs_numpy_fetch_p50": round(naive["p50_ms"] / best["p50_ms"], 1) if naive else None,
                "speedup_vs_exact_scan_p50": round(exact["p50_ms"] / best["p50_ms"], 1) if exact else None,
            }
        )
        entry["ge_100x_vs_numpy"] = bool(
            entry["speedup_vs_numpy_fetch_p50"] and entry["speedup_vs_numpy_fetch_p50"] >= 100
        )
    return entry


def _plot_one(ax, rows: list[dict], n: int, metric: str) -> None:
    indexes = list(dict.fromkeys(r.get("index") for r in rows if r["n"] == n and r["method"] == "pgvector_hnsw"))
    first = indexes[0] if indexes else None  # gallery-scoped series: the first index only, to keep it legible
    series = [("pgvector_hnsw", "all", "o-", "HNSW, whole table", i) for i in indexes] + [
        ("pgvector_hnsw", "gallery", "s--", "HNSW post-filter, 1 of 10 galleries", first),
        ("pgvector_planner", "gallery", "^:", "planner's choice, 1 of 10 galleries", first),
    ]
    own = dict.fromkeys(r["index"] for r in rows if r["n"] == n and r["method"] == "pgvector_gallery_hnsw")
    series += [("pgvector_gallery_hnsw", "gallery", "D-", "its own index, 1 of 10 galleries", i) for i in own]
    for method, scope, style, label, index in series:
        pts = [
            r for r in rows if r["n"] == n and r["method"] == method and r["scope"] == scope and r.get("index") == index
        ]
        pts.sort(key=lambda r: r["ef_search"])
        if not pts:
            continue
        label = f"{label} ({index})" if index and len(indexes) > 1 else label
        ax.plot([r[metric] for r in pts], [r["p50_ms"] for r in pts], style, label=label)
        for r in pts:
            ax.annotate(
                str(r["ef_search"]), (r[metric], r["p50_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    for method, scope, marker, label in (
        ("pgvector_exact", "all", "X", "exact scan, whole table"),
        ("pgvector_exact", "gallery", "P", "exact, 1 gallery"),
        ("numpy_fetch_all", "all", "D", "fetch all + NumPy"),
        ("numpy_fetch_all", "gallery", "d", "fetch gallery + NumPy"),
    ):
        r = next((r for r in rows if r["n"] == n and r["method"] == method and r["scope"] == scope), None)
        if r:
            ax.plot([r[metric]], [r["p50_ms"]], marker, markersize=9, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(f"{metric.replace('_at_', '@')} vs exact")
    ax.set_ylabel("p50 latency (ms, log)")
    ax.set_title(f"{n:,} faces (labels: ef_search)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in rows})
    metrics = ("recall_at_1", "recall_at_10")
    if all("person_recall_at_1" in r for r in rows):
        metrics += ("person_recall_at_1",)
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(6 * len(sizes), 4.6 * len(metrics)), squeeze=False)
    for row_axes, metric in zip(axes, metrics, strict=True):
        for ax, n in zip(row_axes, sizes, strict=True):
            _plot_one(ax, rows, n, metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_again(json_path: Path) -> int:
    """Targets and plot of an earlier run, made again with the current reporting code."""
    payload = json.loads(json_path.read_text())
    payload["targets"] = targets(payload["sizes"], payload["rows"])
    write_json(json_path, payload)
    plot(payload["rows"], json_path.with_suffix(".png"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated table sizes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--parallel-build-workers", type=int, default=1, help="max_parallel_maintenance_workers")
    parser.add_argument("--shared-buffers", default="2GB", help="set with ALTER SYSTEM + restart; '' keeps the default")
    parser.add_argument(
        "--latent-dim", type=int, default=64, help="intrinsic dimension of the synthetic data (512: isotropic)"
    )
    parser.add_argument(
        "--spectrum",
        type=Path,
        default=None,
        help="sample from bench.spectrum's model of real embeddings (e.g. bench/results/lfw_spectrum.json)",
    )
    parser.add_argument("--m", type=int, default=HNSW_M, help="HNSW m (migration 0001: 16, 0007: 24)")
    parser.add_argument(
        "--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION, help="HNSW ef_construction (0001: 64, 0007: 100)"
    )
    parser.add_argument(
        "--ef-sweep", default=",".join(map(str, EF_SWEEP)), help="ef_search values for the whole-table sweep"
    )
    parser.add_argument(
        "--indexes",
        default="",
        help="HNSW variants as m:ef_construction pairs, built and swept one after another on the same rows "
        "(e.g. 16:64,24:128); default: --m:--ef-construction",
    )
    parser.add_argument(
        "--gallery-index",
        default="",
        help="also build one partial HNSW index per gallery, as m:ef_construction (e.g. 16:64), and sweep "
        "gallery-scoped queries over it (--ef-scoped)",
    )
    parser.add_argument("--ef-scoped", default=",".join(map(str, EF_SCOPED)), help="ef_search values, gallery scope")
    parser.add_argument("--hnsw-max-size", type=int, default=10**9, help="skip the HNSW part above this size")
    parser.add_argument("--output", default="db_results", help="file stem under bench/results/")
    parser.add_argument("--merge", action="store_true", help="keep sizes from an earlier results file not run now")
    parser.add_argument(
        "--report-only", action="store_true", help="recompute the targets and the plot of --output's JSON; run nothing"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return report_again(RESULTS_DIR / f"{args.output}.json")
    args.ef_sweep = [int(ef) for ef in args.ef_sweep.split(",") if ef]
    args.ef_scoped = [int(ef) for ef in args.ef_scoped.split(",") if ef]
    args.gallery_index = tuple(int(v) for v in args.gallery_index.split(":")) if args.gallery_index else None
    pairs = args.indexes or f"{args.m}:{args.ef_construction}"
    args.indexes = [tuple(int(v) for v in pair.split(":")) for pair in pairs.split(",") if pair]
    args.spectrum_model = json.loads(args.spectrum.read_text())["model"] if args.spectrum else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(s) for s in args.sizes.split(",") if s]

    from stack.embedded import start_postgres, stop_postgres

    tmp = Path(tempfile.mkdtemp(prefix="facebench-db-"))
    server, _ = start_postgres(tmp)
    try:
        if args.shared_buffers:
            from pgserver._commands import pg_ctl

            server.psql(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}';")
            pg_ctl(
                ["-w", "-m", "fast", "-l", str(server.pgdata / "restart.log"), "restart"],
                pgdata=server.pgdata,
                user=server.system_user,
            )
        dbname = f"facebench_{uuid.uuid4().hex[:8]}"
        server.psql(f"CREATE DATABASE {dbname};")
        url = server.get_uri(dbname)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            # For every index build of the run.
            conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
            conn.execute(f"SET max_parallel_maintenance_workers = {args.parallel_build_workers}")
            env = {
                "postgres": setting(conn, "server_version"),
                "pgvector": conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0],
                "shared_buffers": setting(conn, "shared_buffers"),
                "max_parallel_workers_per_gather": setting(conn, "max_parallel_workers_per_gather"),
                "maintenance_work_mem": args.maintenance_work_mem,
                "max_parallel_maintenance_workers": args.parallel_build_workers,
                "hnsw": [{"m": m, "ef_construction": efc, "ops": "vector_cosine_ops"} for m, efc in args.indexes],
                "k": K,
                "galleries": N_GALLERIES,
                "faces_per_person": FACES_PER_PERSON,
                "face_noise_norm": FACE_NOISE,
                "query_noise_norm": QUERY_NOISE,
                **(
                    {"data": f"sampled from {args.spectrum} (real LFW embedding covariances)"}
                    if args.spectrum
                    else {
                        "data": "latent-subspace model",
                        "latent_dim": args.latent_dim,
                        "isotropic_residual_norm": ISOTROPIC_NOISE if args.latent_dim < DIM else 0.0,
                    }
                ),
                "connection": "psycopg 3 over the unix socket, prepared statements, vector params",
            }
            rows: list[dict] = []
            size_results = []
            for n in sizes:
                size_results.append(bench_size(conn, n, args.queries, rows, args))
                conn.execute("DROP TABLE faces")
        json_path = RESULTS_DIR / f"{args.output}.json"
        command = "python -m bench.db " + " ".join(argv if argv is not None else sys.argv[1:])
        earlier_commands: list[str] = []
        if args.merge and json_path.exists():
            old = json.loads(json_path.read_text())
            earlier_commands = old.get("commands", [old["command"]])
            size_results = [s for s in old["sizes"] if s["n"] not in sizes] + size_results
            rows = [r for r in old["rows"] if r["n"] not in sizes] + rows
            size_results.sort(key=lambda s: s["n"])
            rows.sort(key=lambda r: r["n"])
        payload = {
            "benchmark": "bench.db",
            "command": command,
            "commands": [*earlier_commands, command],
            "machine": machine_info(),
            "settings": env,
            "targets": targets(size_results, rows),
            "sizes": size_results,
            "rows": rows,
        }
        write_json(json_path, payload)
        write_csv(RESULTS_DIR / f"{args.output}.csv", rows)
        plot(rows, RESULTS_DIR / f"{args.output}.png")
        log.info("targets: %s", payload["targets"])
    finally:
        stop_postgres(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

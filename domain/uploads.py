"""A queued job's photos in Redis instead of its row (UPLOAD_STORE=redis).

In PostgreSQL every upload is written to the WAL (then archived, replicated and vacuumed): 211 kB
and ~4.6 ms of CPU a 190 kB photo, against 0 B and ~0.9 ms in Redis (PERFORMANCE.md, section 12).
The job's params say where its photos are (`upload`: "redis"), so a worker reads them from there
whatever its own settings. Every key has a TTL (UPLOAD_TTL_SECONDS): a photo whose job never ends
(its row deleted while queued) goes by itself; the worker deletes them as soon as the job ends.

Durability is Redis's: with appendonly (the deployed setting) a restart keeps them; the loss of
the Redis host loses them, and their jobs end `input_missing` (the client sends them again).
"""

from __future__ import annotations

import uuid

import redis

from domain.models import Job

REDIS = "redis"
PARTS = ("image", "image_2")


def in_redis(job: Job) -> bool:
    """Whether the job's photos wait in Redis (UPLOAD_STORE=redis when it was submitted)."""
    return (job.params or {}).get("upload") == REDIS


def _key(job_id: uuid.UUID, part: str) -> str:
    return f"faceapi:upload:{job_id}:{part}"


def put(client: redis.Redis, job_id: uuid.UUID, image: bytes, second_image: bytes | None, ttl: int) -> None:
    """Keep the job's photos (one round trip) for `ttl` seconds at most."""
    pipe = client.pipeline(transaction=False)
    for part, data in zip(PARTS, (image, second_image), strict=True):
        if data is not None:
            pipe.set(_key(job_id, part), data, ex=ttl)
    pipe.execute()


def take(client: redis.Redis, job_id: uuid.UUID) -> tuple[bytes | None, bytes | None]:
    """The job's photos (None where there is none, or it is lost)."""
    image, second_image = client.mget([_key(job_id, part) for part in PARTS])
    return image, second_image


def drop(client: redis.Redis, job_id: uuid.UUID) -> None:
    """Erase the job's photos (the job ended, or was never queued)."""
    client.delete(*(_key(job_id, part) for part in PARTS))

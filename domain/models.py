"""SQLAlchemy 2.0 typed models. The schema itself changes only through migrations/."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

EMBEDDING_DIM = 512


class Base(DeclarativeBase):
    pass


class Role(enum.StrEnum):
    admin = "admin"
    operator = "operator"
    user = "user"


class JobType(enum.StrEnum):
    enroll = "enroll"
    recognize = "recognize"
    verify = "verify"
    detect = "detect"
    # Gallery portability (migration 0015): one job each for a whole gallery.
    export = "export"
    import_ = "import"
    reembed = "reembed"


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed)


# A job that has not ended: waiting for a worker, or being run (the budget, the claim and a batch's
# end all ask this; `JobStatus.finished` is its complement).
UNFINISHED = (JobStatus.queued, JobStatus.running)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Organisation(Base):
    """The tenant: its accounts share its galleries, persons, jobs, batches, webhook secret and
    audit log; nothing of one organisation is visible to another (migration 0010)."""

    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # HMAC key for the organisation's webhooks, created on first use.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created_at()


def _organisation_id() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False)


class Account(Base):
    """Credentials and role inside one organisation. Kept apart from Person, the biometric subject."""

    __tablename__ = "accounts"
    __table_args__ = (Index("ix_accounts_organisation", "organisation_id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(100), nullable=False)
    role: Mapped[Role] = mapped_column(Enum(Role, name="role"), nullable=False, default=Role.user)
    created_at: Mapped[datetime] = _created_at()
    # Tokens issued before this instant are refused (set when the password changes).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    organisation: Mapped[Organisation] = relationship()


class Gallery(Base):
    """A named collection of persons of an organisation; names are unique per organisation."""

    __tablename__ = "galleries"
    __table_args__ = (UniqueConstraint("organisation_id", "name", name="uq_galleries_organisation_name"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    # The account that created it (the gallery stays when that account goes).
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # A fixed recognition threshold for this gallery, instead of the one derived from MATCH_FPIR.
    match_threshold: Mapped[float | None] = mapped_column(Float)
    # The recognizer whose embeddings its searches and enrollments use (migration 0015); NULL: the
    # worker's. A re-embedding switches it when the new embeddings are complete.
    model: Mapped[str | None] = mapped_column(String(100))
    # Recurring unknown faces (migration 0016, domain/unknowns.py): off unless the operator opts in.
    unknowns_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    unknowns_retention_days: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("30"))
    unknowns_next_number: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    created_at: Mapped[datetime] = _created_at()


class Person(Base):
    """A biometric subject: a name, a consent record and the faces enrolled for it."""

    __tablename__ = "persons"
    __table_args__ = (
        UniqueConstraint("gallery_id", "external_id", name="uq_persons_gallery_external_id"),
        Index("ix_persons_gallery_created", "gallery_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(200))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    consent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    consent_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    # Free-form JSON object of the operator's (`metadata` is taken by SQLAlchemy, hence the name).
    meta: Mapped[dict] = mapped_column("metadata", JSONB, nullable=False, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _created_at()

    gallery: Mapped[Gallery] = relationship()
    faces: Mapped[list[Face]] = relationship(back_populates="person", passive_deletes=True, order_by="Face.created_at")


class Face(Base):
    """One enrolled photo of a person, reduced to its embedding (the photo itself is never kept)."""

    __tablename__ = "faces"
    __table_args__ = (
        # The same photo enrolled again for the same person adds nothing (migration 0008).
        UniqueConstraint("person_id", "source_sha256", name="uq_faces_person_source"),
        Index("ix_faces_gallery_source", "gallery_id", "source_sha256"),
        Index("ix_faces_gallery_model", "gallery_id", "model"),
        Index(
            "ix_faces_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 24, "ef_construction": 100},  # migration 0007
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # Denormalised from the person so the vector search filters without a join.
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    # The enrollment job that produced this face: unique, so a redelivered job never adds a second face.
    source_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), unique=True)
    # sha256 of the photo the face came from (the photo itself is never kept); NULL before 0008.
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM), nullable=False)
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    det_score: Mapped[float] = mapped_column(Float, nullable=False)
    bbox: Mapped[list[float]] = mapped_column(JSONB, nullable=False)
    quality: Mapped[dict | None] = mapped_column(JSONB)
    # The aligned 112x112 crop the recognizer embedded, as JPEG (migration 0013): biometric data like
    # the embedding, deleted with the row. Deferred: searches and listings never read it.
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # Whether it has one, read with the row (a face document links its crop without loading it).
    has_crop: Mapped[bool] = column_property(crop.is_not(None))
    created_at: Mapped[datetime] = _created_at()

    person: Mapped[Person] = relationship(back_populates="faces")


class Batch(Base):
    """A batch enrollment: many photos, one enrollment job each."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_owner_created", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    # NULL once a gallery that this batch created is removed because every item failed.
    gallery_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"))
    gallery_name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_gallery: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    total: Mapped[int] = mapped_column(nullable=False)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    deliveries: Mapped[list] = mapped_column(JSONB, nullable=False, default=list, server_default="[]")
    # Set once, when the last item ends and the batch webhook is sent.
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class Job(Base):
    """A unit of asynchronous work. Holds the uploaded bytes only until the job ends."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_organisation_created", "organisation_id", "created_at"),
        Index("ix_jobs_batch", "batch_id"),
        # The organisation's outstanding cost, summed at every submission (domain/budget.py, migration 0011).
        Index(
            "ix_jobs_organisation_outstanding",
            "organisation_id",
            postgresql_include=["cost"],
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # Stored by value: `import` is a Python keyword, so that member's name is `import_`.
    type: Mapped[JobType] = mapped_column(
        Enum(JobType, name="job_type", values_callable=lambda types: [t.value for t in types]), nullable=False
    )
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status"), nullable=False, default=JobStatus.queued
    )
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    # SET NULL: a job outlives a gallery removed because its enrollment failed; deleting a gallery
    # through the API deletes its jobs explicitly (web/services/galleries.delete_gallery).
    gallery_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("galleries.id", ondelete="SET NULL"))
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE", name="fk_jobs_batch"), index=False
    )
    # The API key that submitted the job (None: a signed-in person); no foreign key, so that a
    # revoked key's jobs stay readable. A gallery-scoped key sees gallery-less jobs by it alone.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)
    # Cost units against the organisation's ORG_MAX_PENDING_COST while queued or running (domain/budget.py).
    cost: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    input_image: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # The second photo of a two-photo verification.
    input_image_2: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    result: Mapped[dict | None] = mapped_column(JSONB)
    error: Mapped[dict | None] = mapped_column(JSONB)
    # Milliseconds per stage of the worker's run (claim, decode, detect, embed, search/store).
    timings: Mapped[dict | None] = mapped_column(JSONB)
    # A long job's progress while it runs ({"done": n, "total": m}: an import's or re-embedding's faces).
    progress: Mapped[dict | None] = mapped_column(JSONB)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # One entry per delivery attempt: {delivery_id, attempt, at, status_code, error}.
    deliveries: Mapped[list] = mapped_column(JSONB, nullable=False, default=list, server_default="[]")
    created_at: Mapped[datetime] = _created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The reaper's state (domain/jobs.py, migration 0018): when it last sent the job again, that a
    # worker gave up on it (its message is lost: send it at the next pass), how many times it was
    # sent again after that, and that it was put back once after running past its deadline.
    requeued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_lost: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    requeues_after_errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    requeued_after_timeout: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")


class AuditEvent(Base):
    """Who did what to which object, and when. Never holds image bytes or embeddings."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at", "id"),
        Index("ix_audit_events_actor_at", "actor_id", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
        Index("ix_audit_events_organisation_at", "organisation_id", "at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    # Kept after the actor's account is deleted (as its id and email), so history stays readable.
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    actor_email: Mapped[str | None] = mapped_column(String(254))
    # No foreign keys: events outlive the organisation's accounts and keys.
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    action: Mapped[str] = mapped_column(String(50), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(30))
    target_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, default=dict)


class IdempotencyKey(Base):
    """An Idempotency-Key sent by an account, with the fingerprint of the request it came with and
    the answer given, so a retry gets the same answer and a different request with it a 409."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # NULL while the first request is in flight (or if its process died before answering).
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()


class ApiKey(Base):
    """A service account of an organisation: a role, an optional gallery scope, and the sha256
    of a high-entropy secret (the secret itself is shown once, at creation)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_organisation", "organisation_id", "created_at"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    # Jobs submitted with the key are this account's (revoked with it when the account is deleted).
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    role: Mapped[Role] = mapped_column(Enum(Role, name="role"), nullable=False)
    galleries: Mapped[list[str] | None] = mapped_column(JSONB)
    prefix: Mapped[str] = mapped_column(String(20), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GalleryExport(Base):
    """The archive an export job wrote, downloadable by its organisation until `expires_at`. Deleted
    with any person or face of its gallery (a trigger, migration 0015): it holds their biometric data."""

    __tablename__ = "gallery_exports"
    __table_args__ = (
        Index("ix_gallery_exports_gallery", "gallery_id"),
        Index("ix_gallery_exports_expires", "expires_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    organisation_id: Mapped[uuid.UUID] = _organisation_id()
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    archive: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class FaceReembedding(Base):
    """A face's embedding by the next model, staged while its gallery still serves the old one."""

    __tablename__ = "face_reembeddings"
    __table_args__ = (Index("ix_face_reembeddings_gallery_model", "gallery_id", "model"),)

    face_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM), nullable=False)


class UnknownGroup(Base):
    """A recurring stranger of a gallery with unknowns on: faces that matched nobody, grouped
    (domain/unknown_grouping.py). `number` is its stable id within the gallery."""

    __tablename__ = "unknown_groups"
    __table_args__ = (
        UniqueConstraint("gallery_id", "number", name="uq_unknown_groups_gallery_number"),
        Index("ix_unknown_groups_gallery_last_seen", "gallery_id", "last_seen"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    centroid: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM), nullable=False)
    sightings: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sources: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    # When it reached UNKNOWNS_RECURRING_SIGHTINGS (the `unknown.recurring` webhook fires once).
    recurring_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    deliveries: Mapped[list[dict]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))


class UnknownFace(Base):
    """One sighting of a stranger: biometric data of someone who did not consent, kept only while
    the gallery opts in and for its retention period."""

    __tablename__ = "unknown_faces"
    __table_args__ = (
        Index("ix_unknown_faces_group", "group_id", "seen_at"),
        Index("ix_unknown_faces_gallery_seen", "gallery_id", "seen_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("unknown_groups.id", ondelete="CASCADE"), nullable=False)
    gallery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIM), nullable=False)
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    crop: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    source: Mapped[str | None] = mapped_column(String(100))
    det_score: Mapped[float] = mapped_column(Float, nullable=False)
    bbox: Mapped[list[float]] = mapped_column(JSONB, nullable=False)
    quality: Mapped[dict | None] = mapped_column(JSONB)
    seen_at: Mapped[datetime] = _created_at()

"""Galleries that outlive a deployment and a model: export to an archive, import from one, and
re-embed every face from its aligned crop with another recognizer (docs/EXPORT.md,
docs/RECOGNITION.md "Changing the model").

A gallery's searches and enrollments use the embeddings of its `model` (NULL: the worker's). A
re-embedding stages the new model's embeddings beside the faces (face_reembeddings) while the
gallery keeps serving the old ones, then moves them into the faces and switches `model` in one
transaction: a search sees either the whole old set or the whole new one.

The model itself is the worker's business: these functions get `embed`, which turns JPEG crops into
L2-normalised embeddings of a given model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, undefer

from domain import gallery_archive
from domain.db import session_scope
from domain.errors import ServiceError
from domain.job_params import ImportParams, params_of
from domain.jobs import iso, now
from domain.models import Account, Face, FaceReembedding, Gallery, GalleryExport, Job, Person
from domain.persons import new_person

Embed = Callable[[Sequence[bytes]], np.ndarray]
ON_CONFLICT = ("skip", "merge", "fail")
# Crops embedded in one call (one onnxruntime batch), and staged or stored per commit.
EMBED_CHUNK = 32


def report_progress(job_id: uuid.UUID, done: int, total: int) -> None:
    """Write a running job's progress in a transaction of its own, so that it shows while the job's
    own transaction is still open. Its time tells the reaper the job is alive (domain.jobs)."""
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(progress={"done": done, "total": total, "at": now().timestamp()})
        )


def serving_model(session: Session, gallery_id: uuid.UUID | None) -> str | None:
    """The model a gallery's searches and enrollments use (None: the worker's own)."""
    if gallery_id is None:
        return None
    # Read on every job: a Core select of the table's column skips the ORM's compile state.
    galleries = Gallery.__table__.c
    return session.execute(select(galleries.model).where(galleries.id == gallery_id)).scalar_one_or_none()


def pin_model(session: Session, gallery_id: uuid.UUID | None, model: str) -> None:
    """A gallery's first face fixes its model: a later change of the worker's model leaves it served
    by the embeddings it has until it is re-embedded."""
    if gallery_id is not None:
        session.execute(update(Gallery).where(Gallery.id == gallery_id, Gallery.model.is_(None)).values(model=model))


def _gallery_of(session: Session, job: Job, *, share_lock: bool = False) -> Gallery:
    query = select(Gallery).where(Gallery.id == job.gallery_id)
    if share_lock:
        query = query.with_for_update(read=True)
    gallery = session.execute(query).scalar_one_or_none() if job.gallery_id else None
    if gallery is None:
        raise ServiceError("gallery_deleted", "The gallery was deleted before the job ran.", status=404)
    return gallery


# --- export -----------------------------------------------------------------------------------------


def export_gallery(
    session: Session, job: Job, *, models: dict[str, dict[str, Any]], ttl_seconds: int, max_bytes: int
) -> dict[str, Any]:
    """Write the gallery's archive and keep it for its organisation until it expires.

    The gallery row is held FOR SHARE while it is read and the archive stored: a deletion of one of
    its persons or faces (whose trigger locks the row) either comes first and is not in the archive,
    or comes after and deletes the archive (migration 0015)."""
    gallery = _gallery_of(session, job, share_lock=True)
    persons = session.execute(
        select(Person, Account.email)
        .outerjoin(Account, Account.id == Person.consent_by_id)
        .where(Person.gallery_id == gallery.id)
        .order_by(Person.created_at, Person.id)
    ).all()
    faces = session.execute(
        select(Face).options(undefer(Face.crop)).where(Face.gallery_id == gallery.id).order_by(Face.created_at, Face.id)
    ).scalars()
    faces_of: dict[uuid.UUID, list[Face]] = {}
    for face in faces:
        faces_of.setdefault(face.person_id, []).append(face)
    crops: dict[str, bytes] = {}
    vectors: list[np.ndarray] = []
    documents = []
    total = sum(len(faces) for faces in faces_of.values())
    for person, consent_by in persons:
        before = len(vectors)
        documents.append(_person_document(person, consent_by, faces_of.get(person.id, []), crops, vectors))
        if len(vectors) // 1000 != before // 1000:
            report_progress(job.id, len(vectors), total)
    manifest = {
        "exported_at": iso(now()),
        "gallery": {"name": gallery.name, "match_threshold": gallery.match_threshold, "model": gallery.model},
        "models": {face_model: models.get(face_model, {}) for face_model in _models_of(documents)},
        "embeddings": {"file": gallery_archive.EMBEDDINGS, "dtype": "float32", "dim": 512},
        "persons": documents,
    }
    embeddings = np.stack(vectors) if vectors else np.zeros((0, 512), np.float32)
    archive = gallery_archive.write(manifest, embeddings, crops)
    if len(archive) > max_bytes:
        raise ServiceError(
            "export_too_large",
            f"The gallery's archive would be {len(archive)} bytes; GALLERY_ARCHIVE_MAX_BYTES allows {max_bytes}.",
            size=len(archive),
            max_bytes=max_bytes,
        )
    stored = _store_export(session, job, gallery, archive, ttl_seconds)
    return {
        "export_id": str(stored.id),
        "gallery": gallery.name,
        "download": f"/api/v1/exports/{stored.id}",
        "expires_at": iso(stored.expires_at),
        "size": stored.size,
        "sha256": stored.sha256,
        "persons": len(documents),
        "faces": len(vectors),
        "faces_without_crop": len(vectors) - len(crops),
        "format_version": gallery_archive.VERSION,
    }


def _person_document(
    person: Person, consent_by: str | None, faces: list[Face], crops: dict[str, bytes], vectors: list[np.ndarray]
) -> dict[str, Any]:
    face_documents = []
    for face in faces:
        crop_name = f"crops/{face.id.hex}.jpg" if face.crop else None
        if crop_name:
            crops[crop_name] = face.crop
        face_documents.append(
            {
                "id": face.id.hex,
                "photo_sha256": face.source_sha256,
                "model": face.model,
                "embedding": len(vectors),
                "crop": crop_name,
                "det_score": face.det_score,
                "bbox": face.bbox,
                "quality": face.quality,
                "created_at": iso(face.created_at),
            }
        )
        vectors.append(np.asarray(face.embedding, dtype=np.float32))
    return {
        "name": person.name,
        "external_id": person.external_id,
        "metadata": person.meta or {},
        "consent": {"at": iso(person.consent_at), "by": consent_by},
        "created_at": iso(person.created_at),
        "faces": face_documents,
    }


def _models_of(documents: list[dict[str, Any]]) -> list[str]:
    return sorted({face["model"] for person in documents for face in person["faces"]})


def _store_export(session: Session, job: Job, gallery: Gallery, archive: bytes, ttl_seconds: int) -> GalleryExport:
    # A job run again (its worker was cut off) replaces the archive it wrote.
    session.execute(delete(GalleryExport).where(GalleryExport.job_id == job.id))
    stored = GalleryExport(
        id=uuid.uuid4(),
        organisation_id=gallery.organisation_id,
        gallery_id=gallery.id,
        job_id=job.id,
        archive=archive,
        size=len(archive),
        sha256=gallery_archive.checksum_of(archive),
        expires_at=now() + timedelta(seconds=ttl_seconds),
    )
    session.add(stored)
    session.flush()
    return stored


def purge_expired_exports(session: Session) -> int:
    """Delete the archives whose download time is over."""
    return session.execute(delete(GalleryExport).where(GalleryExport.expires_at <= now())).rowcount


# --- import -----------------------------------------------------------------------------------------


def import_target(session: Session, job: Job, worker_model: str) -> tuple[Gallery, bool, str]:
    """The gallery an import fills (created now, in the import's transaction, if it does not exist:
    a failed import leaves none), whether it was created, and the model its faces must have."""
    name = params_of(job, ImportParams).gallery
    created = session.execute(
        insert(Gallery)
        .values(id=uuid.uuid4(), organisation_id=job.organisation_id, owner_id=job.owner_id, name=name)
        .on_conflict_do_nothing(constraint="uq_galleries_organisation_name")
        .returning(Gallery.id)
    ).scalar_one_or_none()
    gallery = session.execute(
        select(Gallery)
        .where(Gallery.organisation_id == job.organisation_id, Gallery.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if gallery.model is None:
        gallery.model = worker_model
    return gallery, created is not None, gallery.model


def import_gallery(
    session: Session,
    job: Job,
    data: bytes,
    *,
    gallery: Gallery,
    created: bool,
    model: str,
    embed: Embed | None,
    max_bytes: int,
    metadata_max_bytes: int,
) -> dict[str, Any]:
    """Import the archive's persons and faces into `gallery`, all or nothing (one transaction).

    Faces of `model` keep their embeddings; others are embedded again from their crops with
    `embed` (None: the worker does not have `model`). Persons are matched by external_id (without
    one: the same name and one of the same photos) and handled by the job's `on_conflict`.
    Importing the same archive again adds nothing."""
    archive = gallery_archive.read(data, max_bytes=max_bytes, metadata_max_bytes=metadata_max_bytes)
    on_conflict = params_of(job, ImportParams).on_conflict
    if created:
        gallery.match_threshold = archive.manifest.gallery.match_threshold
    matches = [_existing_person(session, gallery.id, person) for person in archive.manifest.persons]
    if on_conflict == "fail" and any(matches):
        conflicts = [p.external_id or p.name for p, m in zip(archive.manifest.persons, matches, strict=True) if m]
        raise ServiceError(
            "person_conflict",
            f"{len(conflicts)} of the archive's persons already exist in the gallery (on_conflict=fail): nothing "
            "was imported. Send on_conflict=skip or merge.",
            status=409,
            persons=conflicts[:20],
        )
    importer = _Importer(session, job, gallery, model, embed, archive, len(archive.manifest.faces()))
    items = [
        importer.person(person, existing, on_conflict)
        for person, existing in zip(archive.manifest.persons, matches, strict=True)
    ]
    importer.flush_pending()
    report_progress(job.id, importer.done, importer.total)
    # The job becomes the gallery's (deleted with it, redacted with its persons). Only now: this
    # transaction's lock on the job's row would hold back the progress reports, written apart.
    job.gallery_id = gallery.id
    return {
        "gallery": gallery.name,
        "gallery_created": created,
        "model": model,
        "on_conflict": on_conflict,
        "persons": _count(items, "status", ("created", "merged", "skipped")),
        "faces": importer.counts,
        "items": items,
    }


def _count(items: list[dict[str, Any]], key: str, values: Sequence[str]) -> dict[str, int]:
    return {value: sum(1 for item in items if item[key] == value) for value in values}


def _existing_person(session: Session, gallery_id: uuid.UUID, person: gallery_archive.ArchivePerson) -> Person | None:
    in_gallery = select(Person).where(Person.gallery_id == gallery_id)
    if person.external_id:
        return session.execute(in_gallery.where(Person.external_id == person.external_id)).scalar_one_or_none()
    hashes = [face.photo_sha256 for face in person.faces if face.photo_sha256]
    if not hashes:
        return None
    same_photo = select(Face.person_id).where(Face.gallery_id == gallery_id, Face.source_sha256.in_(hashes))
    query = in_gallery.where(Person.name == person.name, Person.id.in_(same_photo)).limit(1)
    return session.execute(query).scalar_one_or_none()


class _Importer:
    """Adds one archive person after another; faces to embed again wait for a full batch."""

    def __init__(self, session, job, gallery, model, embed, archive, total):
        self.session, self.job, self.gallery, self.model, self.embed = session, job, gallery, model, embed
        self.archive = archive
        self.total, self.done = total, 0
        self.counts = {"added": 0, "reembedded": 0, "existing": 0, "failed": 0}
        self.pending: list[tuple[Person, gallery_archive.ArchiveFace, dict[str, Any]]] = []

    def person(self, person: gallery_archive.ArchivePerson, existing: Person | None, on_conflict: str) -> dict:
        item: dict[str, Any] = {"name": person.name, "external_id": person.external_id, "faces": [], "errors": []}
        if existing is not None and on_conflict == "skip":
            self._advance(len(person.faces))
            return {**item, "status": "skipped", "person_id": str(existing.id)}
        target = existing or self._create(person)
        if existing is not None:
            target.meta = {**person.metadata, **(existing.meta or {})}  # what the gallery has wins
        item.update(status="merged" if existing else "created", person_id=str(target.id))
        for face in person.faces:
            self._face(target, face, item)
        return item

    def _create(self, person: gallery_archive.ArchivePerson) -> Person:
        created = new_person(
            self.session,
            self.gallery.id,
            person.name,
            external_id=person.external_id,
            metadata=person.metadata,
            # The consent as recorded where the archive came from; who recorded it was an account of
            # that deployment (it is in the archive and the import's audit event), not of this one.
            consent_at=person.consent.at,
            consent_by_id=None,
        )
        self.session.flush()
        return created

    def _face(self, person: Person, face: gallery_archive.ArchiveFace, item: dict[str, Any]) -> None:
        if face.photo_sha256 and self._known_photo(person, face, item):
            self._advance(1)
            return
        if face.model == self.model:
            self._insert(person, face, self.archive.embeddings[face.embedding], item, "added")
        elif face.crop is None or self.embed is None:
            reason = "it has no crop" if face.crop is None else f"this worker does not have the model {self.model}"
            self._fail(item, face, "cannot_reembed", f"The face is of the model {face.model} and {reason}.")
        else:
            self.pending.append((person, face, item))
            if len(self.pending) >= EMBED_CHUNK:
                self.flush_pending()
            return
        self._advance(1)

    def _known_photo(self, person: Person, face: gallery_archive.ArchiveFace, item: dict[str, Any]) -> bool:
        owners = self.session.execute(
            select(Face.person_id).where(Face.gallery_id == self.gallery.id, Face.source_sha256 == face.photo_sha256)
        ).scalars()
        owners = set(owners)
        if person.id in owners:
            self.counts["existing"] += 1
            item["faces"].append({"id": face.id, "status": "existing"})
            return True
        if owners:
            self._fail(
                item, face, "photo_enrolled_elsewhere", "This photo is enrolled for another person of the gallery."
            )
            return True
        return False

    def flush_pending(self) -> None:
        if not self.pending:
            return
        vectors = self.embed([self.archive.crops[face.crop] for _, face, _ in self.pending])
        for (person, face, item), vector in zip(self.pending, vectors, strict=True):
            self._insert(person, face, vector, item, "reembedded")
        self._advance(len(self.pending))
        self.pending = []

    def _insert(self, person: Person, face: gallery_archive.ArchiveFace, vector: np.ndarray, item, status) -> None:
        crop = self.archive.crops.get(face.crop) if face.crop else None
        self.session.execute(
            insert(Face)
            .values(
                id=uuid.uuid4(),
                person_id=person.id,
                gallery_id=self.gallery.id,
                source_sha256=face.photo_sha256,
                embedding=np.asarray(vector, dtype=np.float32),
                model=self.model,
                det_score=face.det_score,
                bbox=face.bbox,
                quality=face.quality,
                crop=crop,
            )
            .on_conflict_do_nothing()
        )
        self.counts[status] += 1
        item["faces"].append({"id": face.id, "status": status})

    def _fail(self, item: dict[str, Any], face: gallery_archive.ArchiveFace, code: str, message: str) -> None:
        self.counts["failed"] += 1
        item["faces"].append({"id": face.id, "status": "failed"})
        item["errors"].append({"face": face.id, "code": code, "message": message})

    def _advance(self, faces: int) -> None:
        before, self.done = self.done, self.done + faces
        if self.done // 200 != before // 200:
            report_progress(self.job.id, self.done, self.total)


# --- re-embedding -----------------------------------------------------------------------------------


def _unstaged(gallery_id: uuid.UUID, model: str):
    """The gallery's faces of another model that have no staged embedding of `model` yet."""
    staged = select(FaceReembedding.face_id).where(
        FaceReembedding.gallery_id == gallery_id, FaceReembedding.model == model
    )
    return select(Face).where(Face.gallery_id == gallery_id, Face.model != model, Face.id.not_in(staged))


def reembed_gallery(
    session: Session, job: Job, *, model: str, embed: Embed, chunk: int = EMBED_CHUNK
) -> dict[str, Any]:
    """Embed every face of the gallery again from its crop with `model`, staged in commits of
    `chunk` faces (a job run again resumes), then switch the gallery to `model` at once.

    Faces without a crop cannot be embedded again: they are reported, and the gallery is not
    switched (their persons would stop being recognized) unless the job says `skip_missing`;
    then they stay stored, with their old embedding, and are listed in the result."""
    gallery = _gallery_of(session, job)
    previous = gallery.model
    gallery_id = gallery.id
    session.commit()  # the staging below commits as it goes; nothing is held meanwhile
    total = session.execute(select(func.count()).where(Face.gallery_id == gallery_id)).scalar_one()
    done = (
        total - session.execute(select(func.count()).select_from(_unstaged(gallery_id, model).subquery())).scalar_one()
    )
    report_progress(job.id, done, total)
    while staged := _stage_chunk(session, gallery_id, model, embed, chunk):
        session.commit()
        done += staged
        report_progress(job.id, min(done, total), total)
    missing = _without_crop(session, gallery_id, model)
    if missing and not job.params.get("skip_missing"):
        raise ServiceError(
            "faces_without_crop",
            f"{len(missing)} faces have no crop to embed again (enrolled before crops were kept): the gallery "
            f"still uses {previous}. Enroll those persons' photos again, or send skip_missing=true to switch "
            "anyway (those faces then stay, unused, with their old embedding).",
            status=409,
            faces=missing[:100],
            faces_without_crop=len(missing),
        )
    switched = _switch(session, gallery_id, model, embed, chunk)
    report_progress(job.id, total, total)
    return {
        "gallery": gallery.name,
        "previous_model": previous,
        "model": model,
        "faces": total,
        "reembedded": switched,
        "faces_without_crop": missing,
    }


def _stage_chunk(session: Session, gallery_id: uuid.UUID, model: str, embed: Embed, chunk: int) -> int:
    """Stage the next `chunk` faces that have a crop; the number staged (0: none left)."""
    query = (
        _unstaged(gallery_id, model)
        .where(Face.crop.is_not(None))
        .options(undefer(Face.crop))
        .order_by(Face.id)
        .limit(chunk)
    )
    faces = session.execute(query).scalars().all()
    if not faces:
        return 0
    vectors = embed([face.crop for face in faces])
    rows = [
        {"face_id": face.id, "model": model, "gallery_id": gallery_id, "embedding": np.asarray(v, np.float32)}
        for face, v in zip(faces, vectors, strict=True)
    ]
    session.execute(insert(FaceReembedding).values(rows).on_conflict_do_nothing())
    return len(faces)


def _without_crop(session: Session, gallery_id: uuid.UUID, model: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Face.id, Face.person_id, Person.name, Person.external_id)
        .join(Person, Person.id == Face.person_id)
        .where(Face.gallery_id == gallery_id, Face.model != model, Face.crop.is_(None))
        .order_by(Person.name, Face.id)
    ).all()
    return [
        {"face_id": str(face_id), "person_id": str(person_id), "name": name, "external_id": external_id}
        for face_id, person_id, name, external_id in rows
    ]


_SWITCH = text(
    """
    UPDATE faces f SET embedding = r.embedding, model = r.model
    FROM face_reembeddings r
    WHERE r.face_id = f.id AND r.model = :model AND f.gallery_id = :gallery_id AND f.model <> :model
    """
)


def _switch(session: Session, gallery_id: uuid.UUID, model: str, embed: Embed, chunk: int) -> int:
    """In one transaction: the faces enrolled since the staging began are staged too (the gallery
    row, locked, holds new enrollments back meanwhile), every staged embedding moves into its face,
    and the gallery's model becomes `model`. A search sees all the old set or all the new one."""
    session.execute(select(Gallery.id).where(Gallery.id == gallery_id).with_for_update())
    while _stage_chunk(session, gallery_id, model, embed, chunk):
        pass
    moved = session.execute(_SWITCH, {"model": model, "gallery_id": gallery_id}).rowcount
    session.execute(delete(FaceReembedding).where(FaceReembedding.gallery_id == gallery_id))
    session.execute(update(Gallery).where(Gallery.id == gallery_id).values(model=model))
    return moved

"""Recurring unknown faces: the opt-in pool of faces that matched nobody, grouped into strangers.

Off unless a gallery turns it on (`unknowns.enabled`): these are faces of people who did not
consent. Each unmatched face of a recognition joins the nearest group at or above the grouping
threshold, or starts one (domain/unknown_grouping.py holds the rule); the result gives it the
group's `unknown_id`, a small number stable within the gallery. Faces expire after the gallery's
`retention_days`; turning the pool off, or deleting the gallery, organisation or account, deletes
it (the rows cascade from the gallery).

No model here: faces arrive detected and embedded by a worker's engine, and naming a group as a
person reuses the embeddings it holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from config import Settings
from domain.enrollment import EmbeddedFace, crop_jpeg, rounded_box
from domain.job_params import RecognizeParams, params_of
from domain.jobs import iso, now
from domain.models import AuditEvent, Face, Gallery, Job, UnknownFace, UnknownGroup
from domain.unknown_grouping import joined_centroid, normalised, regroup

MAX_SOURCES = 20  # the distinct `source` labels a group remembers (the most recent ones)
SAMPLE_FACES = 3  # crops shown with each group in a listing


@dataclass(frozen=True)
class PoolSetting:
    """A gallery's `unknowns` setting."""

    enabled: bool
    retention_days: int


@dataclass(frozen=True)
class Sighting:
    """What a recognition result says about an unmatched face kept in the pool."""

    group_id: uuid.UUID
    number: int
    sightings: int
    first_seen: datetime
    became_recurring: bool  # this sighting reached UNKNOWNS_RECURRING_SIGHTINGS

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.number, "sightings": self.sightings, "first_seen": iso(self.first_seen)}


def _as_list(embedding: Any) -> np.ndarray:
    return np.asarray(embedding, dtype=np.float32)


def sight(session: Session, gallery: Gallery, face: EmbeddedFace, model: str, job: Job, settings: Settings) -> Sighting:
    """Keep an unmatched face in the gallery's pool, in the nearest group or a new one.

    The gallery's row is locked for the assignment, so two recognitions of one stranger at once
    cannot start two groups; the lock is held to the job's commit, milliseconds."""
    session.execute(select(Gallery.id).where(Gallery.id == gallery.id).with_for_update())
    embedding = normalised(_as_list(face.embedding))
    distance = UnknownGroup.centroid.cosine_distance(embedding)
    nearest = session.execute(
        select(UnknownGroup, distance)
        .where(UnknownGroup.gallery_id == gallery.id, UnknownGroup.model == model)
        .order_by(distance)
        .limit(1)
    ).first()
    seen = now()
    source = params_of(job, RecognizeParams).source
    if nearest is not None and 1.0 - float(nearest[1]) >= settings.unknowns_group_threshold:
        group = nearest[0]
        group.centroid = joined_centroid(_as_list(group.centroid), group.sightings, embedding)
        group.sightings += 1
        group.last_seen = seen
    else:
        group = _new_group(session, gallery, model, embedding, seen)
    if source and source not in group.sources:
        group.sources = [*group.sources, source][-MAX_SOURCES:]
    became_recurring = group.recurring_at is None and group.sightings >= settings.unknowns_recurring_sightings
    if became_recurring:
        group.recurring_at, group.webhook_url = seen, job.webhook_url
    session.add(
        UnknownFace(
            group_id=group.id,
            gallery_id=gallery.id,
            embedding=embedding,
            model=model,
            crop=crop_jpeg(face, job),
            job_id=job.id,
            source=source,
            det_score=float(face.det_score),
            bbox=rounded_box(face.bbox),
            quality=face.quality,
            seen_at=seen,
        )
    )
    session.flush()
    return Sighting(group.id, group.number, group.sightings, group.first_seen, became_recurring)


def _new_group(session: Session, gallery: Gallery, model: str, embedding: np.ndarray, seen: datetime) -> UnknownGroup:
    number = session.execute(
        update(Gallery)
        .where(Gallery.id == gallery.id)
        .values(unknowns_next_number=Gallery.unknowns_next_number + 1)
        .returning(Gallery.unknowns_next_number - 1)
    ).scalar_one()
    group = UnknownGroup(
        id=uuid.uuid4(),
        gallery_id=gallery.id,
        number=number,
        model=model,
        centroid=embedding,
        sightings=1,
        first_seen=seen,
        last_seen=seen,
        sources=[],
    )
    session.add(group)
    session.flush()
    return group


# --- reading -----------------------------------------------------------------------------------


def group_document(group: UnknownGroup, faces: int, samples: list[uuid.UUID], gallery_name: str) -> dict[str, Any]:
    base = f"/api/v1/galleries/{gallery_name}/unknowns/{group.number}"
    return {
        "id": group.number,
        "faces": faces,
        "sightings": group.sightings,
        "first_seen": iso(group.first_seen),
        "last_seen": iso(group.last_seen),
        "sources": group.sources,
        "recurring": group.recurring_at is not None,
        "sample_crops": [f"{base}/faces/{face_id}/crop" for face_id in samples],
    }


def face_document(face: UnknownFace, group_number: int, gallery_name: str) -> dict[str, Any]:
    return {
        "id": str(face.id),
        "unknown_id": group_number,
        "seen_at": iso(face.seen_at),
        "source": face.source,
        "job_id": str(face.job_id) if face.job_id else None,
        "det_score": round(face.det_score, 4),
        "bbox": face.bbox,
        "quality": face.quality,
        "crop_url": f"/api/v1/galleries/{gallery_name}/unknowns/{group_number}/faces/{face.id}/crop",
    }


def list_groups(
    session: Session, gallery: Gallery, *, order: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The gallery's groups, most recently seen or most seen first, with their sample crops, in
    three statements whatever the page's size (the groups, their face counts, their samples)."""
    sort = (UnknownGroup.sightings.desc(),) if order == "count" else (UnknownGroup.last_seen.desc(),)
    total = session.execute(select(func.count()).where(UnknownGroup.gallery_id == gallery.id)).scalar_one()
    groups = list(
        session.execute(
            select(UnknownGroup)
            .where(UnknownGroup.gallery_id == gallery.id)
            .order_by(*sort, UnknownGroup.number.desc())
            .limit(limit)
            .offset(offset)
        ).scalars()
    )
    ids = [g.id for g in groups]
    counts = dict(
        session.execute(
            select(UnknownFace.group_id, func.count())
            .where(UnknownFace.group_id.in_(ids))
            .group_by(UnknownFace.group_id)
        ).all()
    )
    ranked = (
        select(
            UnknownFace.group_id,
            UnknownFace.id,
            func.row_number()
            .over(partition_by=UnknownFace.group_id, order_by=UnknownFace.det_score.desc())
            .label("rank"),
        )
        .where(UnknownFace.group_id.in_(ids), UnknownFace.crop.is_not(None))
        .subquery()
    )
    samples: dict[uuid.UUID, list[uuid.UUID]] = {}
    for group_id, face_id in session.execute(
        select(ranked.c.group_id, ranked.c.id).where(ranked.c.rank <= SAMPLE_FACES)
    ).all():
        samples.setdefault(group_id, []).append(face_id)
    documents = [group_document(g, counts.get(g.id, 0), samples.get(g.id, []), gallery.name) for g in groups]
    return documents, total


def find_group(session: Session, gallery: Gallery, number: int) -> UnknownGroup | None:
    return session.execute(
        select(UnknownGroup).where(UnknownGroup.gallery_id == gallery.id, UnknownGroup.number == number)
    ).scalar_one_or_none()


def group_faces(session: Session, group: UnknownGroup) -> list[UnknownFace]:
    return list(
        session.execute(
            select(UnknownFace).where(UnknownFace.group_id == group.id).order_by(UnknownFace.seen_at.desc())
        ).scalars()
    )


def face_crop(session: Session, group: UnknownGroup, face_id: uuid.UUID) -> bytes | None:
    return session.execute(
        select(UnknownFace.crop).where(UnknownFace.id == face_id, UnknownFace.group_id == group.id)
    ).scalar_one_or_none()


# --- changing ----------------------------------------------------------------------------------


def best_faces(faces: list[UnknownFace], centroid: np.ndarray, consistency: float, limit: int) -> list[UnknownFace]:
    """The faces a person is made of: those that agree with the group (similarity to its centroid
    at least `consistency`), best first (detection score, then sharpness), at most `limit`."""
    agreeing = [f for f in faces if float(np.dot(_as_list(f.embedding), centroid)) >= consistency]
    agreeing.sort(key=lambda f: (f.det_score, (f.quality or {}).get("sharpness", 0.0)), reverse=True)
    return agreeing[:limit]


def faces_for_person(group: UnknownGroup, faces: list[UnknownFace], person_id: uuid.UUID) -> list[Face]:
    """Face rows of a person, made from pooled faces (the embedding and crop they already have)."""
    return [
        Face(
            person_id=person_id,
            gallery_id=group.gallery_id,
            embedding=_as_list(f.embedding),
            model=f.model,
            det_score=f.det_score,
            bbox=f.bbox,
            quality=f.quality,
            crop=f.crop,
        )
        for f in faces
    ]


def recompute(session: Session, group: UnknownGroup) -> bool:
    """The group's centroid from the faces it holds now; deletes it when none is left (False)."""
    embeddings = session.execute(select(UnknownFace.embedding).where(UnknownFace.group_id == group.id)).scalars().all()
    if not embeddings:
        session.delete(group)
        return False
    group.centroid = normalised(np.sum([_as_list(e) for e in embeddings], axis=0))
    return True


def merge(session: Session, source: UnknownGroup, target: UnknownGroup) -> None:
    """One stranger seen as two: `source`'s faces join `target`, which keeps its id."""
    session.execute(update(UnknownFace).where(UnknownFace.group_id == source.id).values(group_id=target.id))
    target.sightings += source.sightings
    target.first_seen = min(target.first_seen, source.first_seen)
    target.last_seen = max(target.last_seen, source.last_seen)
    target.sources = list(dict.fromkeys([*target.sources, *source.sources]))[-MAX_SOURCES:]
    target.recurring_at = target.recurring_at or source.recurring_at
    session.delete(source)
    session.flush()
    recompute(session, target)


def delete_pool(session: Session, gallery_id: uuid.UUID) -> int:
    """Every group and face of the gallery's pool (the faces cascade from their groups)."""
    return session.execute(delete(UnknownGroup).where(UnknownGroup.gallery_id == gallery_id)).rowcount


def _system_audit(session: Session, gallery: Gallery, action: str, **details: Any) -> None:
    """An event no caller made (the retention purge), in the gallery's organisation's log."""
    session.add(
        AuditEvent(
            organisation_id=gallery.organisation_id,
            action=action,
            target_type="gallery",
            target_id=str(gallery.id),
            details=details,
        )
    )


def purge_expired(session: Session, at: datetime | None = None) -> int:
    """Faces past their gallery's retention, and the groups left empty; audited per gallery."""
    at = at or now()
    purged = 0
    galleries = session.execute(select(Gallery).where(Gallery.unknowns_enabled.is_(True))).scalars().all()
    for gallery in galleries:
        cutoff = at - timedelta(days=gallery.unknowns_retention_days)
        faces = session.execute(
            delete(UnknownFace).where(UnknownFace.gallery_id == gallery.id, UnknownFace.seen_at < cutoff)
        ).rowcount
        if not faces:
            continue
        emptied = session.execute(
            delete(UnknownGroup).where(
                UnknownGroup.gallery_id == gallery.id,
                ~select(UnknownFace.id).where(UnknownFace.group_id == UnknownGroup.id).exists(),
            )
        ).rowcount
        for group in session.execute(select(UnknownGroup).where(UnknownGroup.gallery_id == gallery.id)).scalars():
            recompute(session, group)
        _system_audit(session, gallery, "unknowns.purge", faces=faces, groups=emptied, older_than=iso(cutoff))
        purged += faces
    return purged


def regroup_gallery(session: Session, gallery: Gallery, threshold: float) -> int:
    """Fix groups that arrival order made badly (domain/unknown_grouping.regroup): faces move to
    the group they are closest to, groups of one stranger merge into the older one. Returns how
    many faces changed group. The gallery is locked meanwhile, as during a sighting."""
    session.execute(select(Gallery.id).where(Gallery.id == gallery.id).with_for_update())
    groups = {
        g.number: g
        for g in session.execute(select(UnknownGroup).where(UnknownGroup.gallery_id == gallery.id)).scalars()
    }
    rows = session.execute(
        select(UnknownFace.id, UnknownFace.embedding, UnknownGroup.number)
        .join(UnknownGroup, UnknownGroup.id == UnknownFace.group_id)
        .where(UnknownFace.gallery_id == gallery.id)
    ).all()
    if len(groups) < 2 or not rows:
        return 0
    labels = np.array([number for _, _, number in rows])
    embeddings = np.stack([normalised(_as_list(e)) for _, e, _ in rows])
    after = regroup(labels, embeddings, threshold)
    moved = 0
    for (face_id, _, _), old, new in zip(rows, labels, after, strict=True):
        if old != new:
            session.execute(update(UnknownFace).where(UnknownFace.id == face_id).values(group_id=groups[int(new)].id))
            groups[int(old)].sightings -= 1
            groups[int(new)].sightings += 1
            moved += 1
    survivors = set(after.tolist())
    for number, group in groups.items():
        if number not in survivors:
            session.delete(group)
        else:
            group.sightings = max(group.sightings, int(np.count_nonzero(after == number)))
            recompute(session, group)
    return moved


def recurring_event(session: Session, group_id: uuid.UUID) -> tuple[uuid.UUID, str, dict[str, Any]] | None:
    """(organisation, url, body) of a group's `unknown.recurring` webhook; None when the group is
    gone (named, merged, deleted or purged meanwhile) or had no webhook to call."""
    row = session.execute(
        select(UnknownGroup, Gallery)
        .join(Gallery, Gallery.id == UnknownGroup.gallery_id)
        .where(UnknownGroup.id == group_id)
    ).first()
    if row is None or not row[0].webhook_url:
        return None
    group, gallery = row
    faces = session.execute(select(func.count()).where(UnknownFace.group_id == group.id)).scalar_one()
    document = {
        "event": "unknown.recurring",
        "gallery": gallery.name,
        "unknown": group_document(group, faces, [], gallery.name),
    }
    return gallery.organisation_id, group.webhook_url, document

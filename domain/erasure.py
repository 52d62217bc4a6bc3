"""What deleting a person erases beyond its own rows (its faces go by cascade).

Finished jobs stay readable for JOB_RETENTION_DAYS, and some name the person: a recognition's
matches carry its id, name, external_id and metadata; a verification against it carries its id;
a batch item names it (its manifest row or folder). `redact_person` removes the person from all
of them, in the transaction that deletes it, so nothing it leaves behind still says who it was:

- a recognition loses the person's matches (each face lists only persons that still exist) and
  counts them in `redacted_matches`;
- a verification against the person keeps its similarity and verdict, its `person_id` becomes
  null (as the job's own does, by the foreign key);
- a batch item enrolled for the person forgets the name, external_id and file name it was sent
  with (a file name is the sender's text like a name: `Yorick Erasure.jpg`, a ZIP folder
  `Zelda Quixote/1.jpg`), and so do the items of the same batch sent for it that failed before a
  person was chosen (same name or external_id);
- a gallery import's per-person items and a re-embedding's faces without a crop keep the
  person's entry without its id, name and external_id;
- deleting an account redacts its face profile (its linked person) the same way
  (domain/accounts.delete_account).

Only finished jobs are rewritten: a recognition still running finds the person gone when it
reads the names of its candidates (domain/matching.py), unless it read them just before the
deletion. The audit log records person events by id only (never a name).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from domain.models import Job, JobStatus, JobType, Person

FINISHED = (JobStatus.succeeded, JobStatus.failed)


def _faces_without_person(faces: list[dict[str, Any]], person_id: str) -> tuple[list[dict[str, Any]], int]:
    removed = 0
    kept = []
    for face in faces:
        matches = [match for match in face.get("matches") or [] if match.get("person_id") != person_id]
        removed += len(face.get("matches") or []) - len(matches)
        kept.append({**face, "matches": matches})
    return kept, removed


def _without_person(result: dict[str, Any], person_id: str) -> dict[str, Any]:
    """The result without the person's matches: one photo's `faces`, or each photo's of a
    recognition of several (`photos`)."""
    if "photos" in result:
        photos, removed = [], 0
        for photo in result["photos"]:
            faces, count = _faces_without_person(photo.get("faces") or [], person_id)
            photos.append({**photo, "faces": faces})
            removed += count
        return {**result, "photos": photos, "redacted_matches": result.get("redacted_matches", 0) + removed}
    faces, removed = _faces_without_person(result.get("faces") or [], person_id)
    return {**result, "faces": faces, "redacted_matches": result.get("redacted_matches", 0) + removed}


def redact_person(session: Session, person: Person) -> int:
    """Remove the person from the finished jobs that mention it (see the module's docstring), in
    the caller's transaction; returns how many jobs were rewritten."""
    person_id = str(person.id)
    rewritten = 0
    recognitions = session.execute(
        select(Job).where(
            Job.gallery_id == person.gallery_id,
            Job.type == JobType.recognize,
            Job.status.in_(FINISHED),
            or_(
                Job.result.contains({"faces": [{"matches": [{"person_id": person_id}]}]}),
                Job.result.contains({"photos": [{"faces": [{"matches": [{"person_id": person_id}]}]}]}),
            ),
        )
    ).scalars()
    for job in recognitions:
        job.result = _without_person(job.result, person_id)
        rewritten += 1
    about = list(session.execute(select(Job).where(Job.person_id == person.id, Job.status.in_(FINISHED))).scalars())
    siblings = _failed_items_sent_for(session, about)  # read before `about` forgets its names
    for job in about:
        if job.type is JobType.verify and job.result and job.result.get("person_id") == person_id:
            job.result = {**job.result, "person_id": None}
        _forget_what_was_sent(job)
        rewritten += 1
    for job in siblings:
        _forget_what_was_sent(job)
        rewritten += 1
    rewritten += _forget_as_possible_duplicate(session, person)
    rewritten += _forget_in_gallery_jobs(session, person)
    session.flush()
    return rewritten


# Where a gallery import's or re-embedding's result (or error) lists persons by id and name.
GALLERY_JOB_LISTS = ("items", "faces_without_crop", "faces")


def _forget_in_gallery_jobs(session: Session, person: Person) -> int:
    """Imports and re-embeddings of the gallery that listed the person (an import's per-person
    items, the faces without a crop) keep the entry, without its id, name and external_id."""
    person_id = str(person.id)
    mentions = [Job.result.contains({key: [{"person_id": person_id}]}) for key in GALLERY_JOB_LISTS]
    mentions.append(Job.error.contains({"faces": [{"person_id": person_id}]}))
    jobs = session.execute(
        select(Job).where(
            Job.gallery_id == person.gallery_id,
            Job.type.in_((JobType.import_, JobType.reembed)),
            Job.status.in_(FINISHED),
            or_(*mentions),
        )
    ).scalars()
    rewritten = 0
    for job in jobs:
        job.result, job.error = _without_names(job.result, person_id), _without_names(job.error, person_id)
        rewritten += 1
    return rewritten


def _without_names(document: dict[str, Any] | None, person_id: str) -> dict[str, Any] | None:
    if not document:
        return document
    forgotten = {"person_id": None, "name": None, "external_id": None}
    return {
        key: [{**entry, **forgotten} if entry.get("person_id") == person_id else entry for entry in value]
        if key in GALLERY_JOB_LISTS and isinstance(value, list)
        else value
        for key, value in document.items()
    }


def _forget_as_possible_duplicate(session: Session, person: Person) -> int:
    """Enrollments of the gallery that reported the person as a face's other name
    (`possible_duplicate_of`, in a result or an `identity_exists` error) drop it from the list."""
    mention = {"possible_duplicate_of": [{"person_id": str(person.id)}]}
    jobs = session.execute(
        select(Job).where(
            Job.gallery_id == person.gallery_id,
            Job.type == JobType.enroll,
            Job.status.in_(FINISHED),
            or_(Job.result.contains(mention), Job.error.contains(mention)),
        )
    ).scalars()
    rewritten = 0
    for job in jobs:
        job.result, job.error = _without_duplicate(job.result, person.id), _without_duplicate(job.error, person.id)
        rewritten += 1
    return rewritten


def _without_duplicate(document: dict[str, Any] | None, person_id: Any) -> dict[str, Any] | None:
    if not document or "possible_duplicate_of" not in document:
        return document
    kept = [entry for entry in document["possible_duplicate_of"] if entry.get("person_id") != str(person_id)]
    return {**document, "possible_duplicate_of": kept}


SENT_TEXT = ("name", "external_id", "file")


def _forget_what_was_sent(job: Job) -> None:
    if job.params and any(job.params.get(field) is not None for field in SENT_TEXT):
        job.params = {**job.params, **dict.fromkeys(SENT_TEXT)}
        flag_modified(job, "params")


def _failed_items_sent_for(session: Session, items: list[Job]) -> list[Job]:
    """The person-less items (refused before a person was chosen) of the batches that enrolled the
    person, sent with its name or external_id."""
    sent: dict[Any, set[tuple[str, str]]] = {}
    for job in items:
        if job.batch_id is not None and job.params:
            sent.setdefault(job.batch_id, set()).update(
                (field, job.params[field]) for field in ("name", "external_id") if job.params.get(field) is not None
            )
    if not sent:
        return []
    siblings = session.execute(
        select(Job).where(Job.batch_id.in_(sent), Job.person_id.is_(None), Job.status.in_(FINISHED))
    ).scalars()
    return [
        job
        for job in siblings
        if any((field, (job.params or {}).get(field)) in sent[job.batch_id] for field in ("name", "external_id"))
    ]

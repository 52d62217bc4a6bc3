"""What merging a person into another rewrites beyond its faces (web/services/persons.merge_persons).

A merge says that two persons were one all along, so the finished jobs that named the
merged-away person (the source) now name the person it was merged into (the target), found
the way domain/erasure.py finds them when a person is deleted:

- a recognition's match of the source becomes the target's (its id, name, external_id and
  metadata as they are now); a face that matched both keeps one match, the better similarity;
- a verification against the source, and an enrollment (a batch's item) that added a face to
  it, belong to the target; what the sender sent (name, external_id, file) stays as sent;
- a `possible_duplicate_of` entry and a gallery import's or re-embedding's entry name the target.

Only finished jobs are rewritten: one still running finds the source gone, as after a deletion.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain.erasure import FINISHED, GALLERY_JOB_LISTS
from domain.models import Job, JobType, Person


def hand_over_mentions(session: Session, source: Person, target: Person) -> int:
    """Make the finished jobs that name `source` name `target`, in the caller's transaction (before
    `source` is deleted); returns how many jobs were rewritten."""
    rewritten = _recognitions(session, source, target)
    rewritten += _jobs_of_the_person(session, source, target)
    rewritten += _other_mentions(session, source, target)
    session.flush()
    return rewritten


def _match_of(target: Person, similarity: Any) -> dict[str, Any]:
    return {
        "person_id": str(target.id),
        "name": target.name,
        "external_id": target.external_id,
        "metadata": target.meta or {},
        "similarity": similarity,
    }


def _faces_naming_target(faces: list[dict[str, Any]], source_id: str, target: Person) -> list[dict[str, Any]]:
    rewritten = []
    for face in faces:
        matches = [
            {**match, **_match_of(target, match.get("similarity"))} if match.get("person_id") == source_id else match
            for match in face.get("matches") or []
        ]
        matches.sort(key=lambda match: match.get("similarity") or 0, reverse=True)
        rewritten.append({**face, "matches": _first_per_person(matches)})
    return rewritten


def _first_per_person(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per person, the first (the lists are ordered best first)."""
    seen: set[Any] = set()
    kept = []
    for entry in entries:
        if entry.get("person_id") not in seen:
            seen.add(entry.get("person_id"))
            kept.append(entry)
    return kept


def _recognitions(session: Session, source: Person, target: Person) -> int:
    source_id = str(source.id)
    jobs = session.execute(
        select(Job).where(
            Job.gallery_id == source.gallery_id,
            Job.type == JobType.recognize,
            Job.status.in_(FINISHED),
            or_(
                Job.result.contains({"faces": [{"matches": [{"person_id": source_id}]}]}),
                Job.result.contains({"photos": [{"faces": [{"matches": [{"person_id": source_id}]}]}]}),
            ),
        )
    ).scalars()
    rewritten = 0
    for job in jobs:
        result = dict(job.result)
        if "photos" in result:
            result["photos"] = [
                {**photo, "faces": _faces_naming_target(photo.get("faces") or [], source_id, target)}
                for photo in result["photos"]
            ]
        else:
            result["faces"] = _faces_naming_target(result.get("faces") or [], source_id, target)
        job.result = result
        rewritten += 1
    return rewritten


def _jobs_of_the_person(session: Session, source: Person, target: Person) -> int:
    """Enrollments (batch items too) and verifications of the source: the target's now."""
    source_id, target_id = str(source.id), str(target.id)
    jobs = list(session.execute(select(Job).where(Job.person_id == source.id, Job.status.in_(FINISHED))).scalars())
    for job in jobs:
        job.person_id = target.id
        job.result = _without_duplicate_of(_with_person(job.result, source_id, target_id), target_id)
        job.error = _without_duplicate_of(_with_person(job.error, source_id, target_id), target_id)
    return len(jobs)


def _with_person(document: dict[str, Any] | None, source_id: str, target_id: str) -> dict[str, Any] | None:
    if document and document.get("person_id") == source_id:
        return {**document, "person_id": target_id}
    return document


def _without_duplicate_of(document: dict[str, Any] | None, own_id: str) -> dict[str, Any] | None:
    """A face is no possible duplicate of its own person: the merge made the two one."""
    if not document or not isinstance(document.get("possible_duplicate_of"), list):
        return document
    kept = [entry for entry in document["possible_duplicate_of"] if entry.get("person_id") != own_id]
    return {**document, "possible_duplicate_of": kept}


def _entries_naming_target(document: dict[str, Any] | None, source_id: str, target: Person) -> dict[str, Any] | None:
    if not document:
        return document
    named = {"person_id": str(target.id), "name": target.name, "external_id": target.external_id}
    lists = (*GALLERY_JOB_LISTS, "possible_duplicate_of")
    rewritten = dict(document)
    for key in lists:
        if isinstance(document.get(key), list):
            entries = [{**e, **named} if e.get("person_id") == source_id else e for e in document[key]]
            rewritten[key] = _first_per_person(entries) if key == "possible_duplicate_of" else entries
    return rewritten


def _other_mentions(session: Session, source: Person, target: Person) -> int:
    """Enrollments that reported the source as a possible duplicate, imports and re-embeddings
    that listed it."""
    source_id = str(source.id)
    mentions = [Job.result.contains({key: [{"person_id": source_id}]}) for key in GALLERY_JOB_LISTS]
    duplicate = {"possible_duplicate_of": [{"person_id": source_id}]}
    mentions += [
        Job.error.contains({"faces": [{"person_id": source_id}]}),
        Job.result.contains(duplicate),
        Job.error.contains(duplicate),
    ]
    jobs = session.execute(
        select(Job).where(Job.gallery_id == source.gallery_id, Job.status.in_(FINISHED), or_(*mentions))
    ).scalars()
    rewritten = 0
    for job in jobs:
        own_id = str(job.person_id)
        job.result = _without_duplicate_of(_entries_naming_target(job.result, source_id, target), own_id)
        job.error = _without_duplicate_of(_entries_naming_target(job.error, source_id, target), own_id)
        rewritten += 1
    return rewritten

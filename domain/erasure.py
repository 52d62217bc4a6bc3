"""What deleting a person erases beyond its own rows (its faces go by cascade).

Finished jobs stay readable for JOB_RETENTION_DAYS, and some name the person: a recognition's
matches carry its id, name, external_id and metadata; a verification against it carries its id;
a batch item names it (its manifest row or folder). `redact_person` removes the person from all
of them, in the transaction that deletes it, so nothing it leaves behind still says who it was:

- a recognition loses the person's matches (each face lists only persons that still exist) and
  counts them in `redacted_matches`;
- a verification against the person keeps its similarity and verdict, its `person_id` becomes
  null (as the job's own does, by the foreign key);
- a batch item enrolled for the person forgets the name and external_id it was sent with.

Only finished jobs are rewritten: a recognition still running finds the person gone when it
reads the names of its candidates (domain/matching.py), unless it read them just before the
deletion. The audit log records person events by id only (never a name).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from domain.models import Job, JobStatus, JobType, Person

FINISHED = (JobStatus.succeeded, JobStatus.failed)


def _without_person(result: dict[str, Any], person_id: str) -> dict[str, Any]:
    removed = 0
    faces = []
    for face in result.get("faces") or []:
        matches = [match for match in face.get("matches") or [] if match.get("person_id") != person_id]
        removed += len(face.get("matches") or []) - len(matches)
        faces.append({**face, "matches": matches})
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
            Job.result.contains({"faces": [{"matches": [{"person_id": person_id}]}]}),
        )
    ).scalars()
    for job in recognitions:
        job.result = _without_person(job.result, person_id)
        rewritten += 1
    about = session.execute(select(Job).where(Job.person_id == person.id, Job.status.in_(FINISHED))).scalars()
    for job in about:
        if job.type is JobType.verify and job.result and job.result.get("person_id") == person_id:
            job.result = {**job.result, "person_id": None}
        if job.params and (job.params.get("name") is not None or job.params.get("external_id") is not None):
            job.params = {**job.params, "name": None, "external_id": None}
            flag_modified(job, "params")
        rewritten += 1
    session.flush()
    return rewritten

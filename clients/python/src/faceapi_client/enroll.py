"""Enroll many photos into a gallery: interruptible and resumable, never enrolling a photo twice.

    from faceapi_client import FaceAPI
    from faceapi_client.enroll import enroll_photos, folder_items

    api = FaceAPI.from_env()
    summary = enroll_photos(api, folder_items("photos/"), "staff", state="staff-report.json",
                            on_progress=lambda event: print(event.item.file, event.outcome.status))

How nothing is enrolled twice, whenever the run stops (Ctrl-C, a crash, a lost connection):

- The state file (a JSON report) records every photo's sha256 and outcome, and the batch (or
  job) a photo was sent in before its outcome is known. A rerun skips the photos done, follows
  the batches still in flight instead of sending them again, and sends only the rest.
- Every request carries an Idempotency-Key derived from what it sends: per photo, the gallery,
  the photo's sha256, the name and external_id (a batch's key from its photos' keys, in order).
  A request re-sent because its answer was lost is answered with the first answer.
- The server itself refuses doubles: the same photo for the same person succeeds with
  `duplicate: true` and adds nothing; for another person of the gallery it fails
  `photo_enrolled_elsewhere`.

Photos go up in batches (POST /api/v1/enrollments, `batch_size` photos each, the manifest
naming each by its path relative to the folder). Entries with one external_id (or, without
one, one name) are one person. A person without an external_id is kept within one batch (the
server recognises an existing one by its name and that very photo); once the state knows such a
person's id, its further photos go to POST /persons/{id}/faces one by one.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faceapi_client import errors, models
from faceapi_client._http import normalize_url

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
STATE_FORMAT = "faceapi-enroll-report/1"
MAX_BATCH_ITEMS = 500  # the server's limit per request
# Job errors worth sending again on a rerun (the photo itself was not the problem).
TRANSIENT_CODES = {
    "timeout",
    "cancelled",
    "internal_error",
    "input_missing",
    "database_unavailable",
    "queue_unavailable",
    "connection_error",
    "rate_limited",
    "service_unavailable",
    "idempotency_key_in_use",
}
DONE = ("enrolled", "duplicate")


@dataclass(frozen=True)
class EnrollItem:
    """One photo to enroll. `file` names it in the manifest, report and summary (unique per
    run; by default the path relative to the folder)."""

    path: Path
    name: str
    external_id: str | None = None
    file: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "name", (self.name or "").strip())
        object.__setattr__(self, "external_id", (self.external_id or "").strip() or None)
        if not self.file:
            object.__setattr__(self, "file", self.path.as_posix())

    @property
    def person_key(self) -> tuple[str, str]:
        """Entries with one external_id (or, without one, one name) are one person."""
        return ("external_id", self.external_id) if self.external_id else ("name", self.name)


@dataclass
class Outcome:
    """What became of one photo: status `enrolled`, `duplicate` (already enrolled: nothing
    added), `failed`, or `skipped` (done, or failed for good, in an earlier run)."""

    status: str
    person_id: str | None = None
    face_id: str | None = None
    code: str | None = None
    message: str | None = None
    earlier: str | None = None  # for `skipped`: the earlier status


@dataclass
class ProgressEvent:
    item: EnrollItem
    outcome: Outcome
    done: int  # photos accounted for so far, this one included
    total: int


@dataclass
class Failure:
    file: str
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.file}: {self.message} ({self.code})"


@dataclass
class Summary:
    gallery: str
    total: int = 0
    enrolled: int = 0  # added by this run
    duplicate: int = 0  # sent by this run but already enrolled: nothing added
    skipped: int = 0  # done in an earlier run (failures of earlier runs are in `failed`)
    failed: list[Failure] = field(default_factory=list)
    pending: int = 0  # not finished (the run was interrupted)
    persons: set[str] = field(default_factory=set)
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending

    def as_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "total": self.total,
            "enrolled": self.enrolled,
            "duplicate": self.duplicate,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "pending": self.pending,
            "persons": len(self.persons),
            "failures": [{"file": f.file, "code": f.code, "message": f.message, **f.details} for f in self.failed],
        }


# --- what to enroll --------------------------------------------------------------------------------


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def folder_items(root: str | os.PathLike) -> list[EnrollItem]:
    """A folder with one sub-folder per person: the sub-folder's name is the person's name, and
    every photo below it (JPEG, PNG, WebP; hidden files skipped) one of its photos."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    items = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2 or not path.is_file() or _hidden(path, root):
            continue
        if path.suffix.lower() in PHOTO_SUFFIXES:
            items.append(EnrollItem(path=path, name=relative.parts[0], file=relative.as_posix()))
    return items


@dataclass(frozen=True)
class SkippedFile:
    """A file of the folder that is not sent, why, and what to do about it."""

    file: str  # relative to the folder
    reason: str
    advice: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}; {self.advice}"


_CONVERT_HEIC = (
    "convert it to JPEG (macOS: sips -s format jpeg IN.heic --out OUT.jpg; Linux: heif-convert IN.heic OUT.jpg), "
    "or set the iPhone's Settings > Camera > Formats to Most Compatible"
)
# Photo formats a folder often holds that the service does not take (it reads JPEG, PNG and WebP).
UNSUPPORTED_PHOTOS = {
    ".heic": ("HEIC (the iPhone's photo format) is not accepted", _CONVERT_HEIC),
    ".heif": ("HEIF is not accepted", _CONVERT_HEIC),
    ".gif": ("GIF is not accepted", "convert it to PNG or JPEG"),
    **{
        suffix: (f"{suffix[1:].upper()} is not accepted", "convert it to JPEG or PNG")
        for suffix in (".tif", ".tiff", ".bmp", ".avif", ".jxl", ".dng", ".cr2", ".nef", ".arw")
    },
}


def why_skipped(path: Path, file: str) -> SkippedFile | None:
    """Why a file is not sent (None: it is a JPEG, PNG or WebP by its name)."""
    suffix = path.suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return None
    reason, advice = UNSUPPORTED_PHOTOS.get(
        suffix, ("not a photo the service reads (JPEG, PNG or WebP)", "nothing to do unless it is a photo: convert it")
    )
    return SkippedFile(file=file, reason=reason, advice=advice)


def skipped_in_folder(root: str | os.PathLike) -> list[SkippedFile]:
    """Files in the persons' sub-folders that folder_items leaves out (hidden files aside)."""
    root = Path(root)
    skipped = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2 or not path.is_file() or _hidden(path, root):
            continue
        if (why := why_skipped(path, relative.as_posix())) is not None:
            skipped.append(why)
    return skipped


def without_unsupported(items: list[EnrollItem]) -> tuple[list[EnrollItem], list[SkippedFile]]:
    """A mapping's items less those in a format the service does not take (HEIC, GIF, ...)."""
    kept, skipped = [], []
    for item in items:
        why = why_skipped(item.path, item.file) if item.path.suffix.lower() in UNSUPPORTED_PHOTOS else None
        (kept if why is None else skipped).append(item if why is None else why)
    return kept, skipped


def loose_photos(root: str | os.PathLike) -> list[Path]:
    """Photos lying directly in the folder, outside any person's sub-folder (not enrolled)."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


class MappingError(ValueError):
    """The mapping file cannot be read (missing columns, not CSV)."""


def mapping_items(root: str | os.PathLike, mapping: str | os.PathLike) -> list[EnrollItem]:
    """A CSV file with a header naming the columns `file`, `name` and optionally `external_id`
    (also accepted: `path`/`photo`/`filename` for file, `id`/`employee_id` for external_id).
    `file` is relative to `root` (or absolute). Rows naming a file twice are errors."""
    root = Path(root)
    try:
        text = Path(mapping).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read the mapping file {mapping}: {exc}") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}

    def column(*names: str) -> str | None:
        return next((columns[n] for n in names if n in columns), None)

    file_column = column("file", "path", "photo", "filename", "file_name")
    name_column = column("name", "person", "full_name")
    id_column = column("external_id", "id", "employee_id", "externalid")
    if file_column is None or name_column is None:
        raise MappingError(
            f"the mapping file {mapping} needs a header with the columns file,name[,external_id] "
            f"(found: {', '.join(reader.fieldnames or []) or 'nothing'})"
        )
    items = []
    for line, row in enumerate(reader, start=2):
        file = (row.get(file_column) or "").strip()
        name = (row.get(name_column) or "").strip()
        if not file and not name:
            continue  # a blank line
        if not file or not name:
            raise MappingError(f"{mapping}, line {line}: every row needs a file and a name")
        path = Path(file) if Path(file).is_absolute() else root / file
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        items.append(
            EnrollItem(path=path, name=name, external_id=row.get(id_column) if id_column else None, file=relative)
        )
    return items


# --- the state (report) file -------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def photo_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def photo_key(gallery: str, sha256: str, name: str, external_id: str | None) -> str:
    """The per-photo Idempotency-Key: the same photo for the same person into the same gallery."""
    digest = hashlib.sha256("\x00".join([gallery, sha256, name, external_id or ""]).encode())
    return "faceapi-photo-" + digest.hexdigest()[:48]


class StateMismatch(ValueError):
    """The state file belongs to another gallery or service."""


class EnrollState:
    """The report of a folder's enrollment into one gallery: one record per photo, written
    atomically (a temporary file renamed over it) after every change that matters."""

    def __init__(self, path: Path | None, server: str, gallery: str):
        self.path = path
        self.server = normalize_url(server)
        self.gallery = gallery
        self.photos: dict[str, dict[str, Any]] = {}
        self.created_at = _now()
        self.summary: dict[str, Any] = {}
        self.skipped_files: list[SkippedFile] = []  # not sent: their format (this run's finding)
        self._saved_at = 0.0
        self._dirty = False

    @classmethod
    def open(cls, path: str | os.PathLike | None, server: str, gallery: str) -> EnrollState:
        state = cls(Path(path) if path is not None else None, server, gallery)
        if state.path is None or not state.path.exists():
            return state
        try:
            document = json.loads(state.path.read_text())
        except (OSError, ValueError) as exc:
            raise StateMismatch(
                f"the report {state.path} cannot be read ({exc}); move it away or pass another one"
            ) from None
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            raise StateMismatch(f"{state.path} is not an enrollment report of this tool; pass another report file")
        if document.get("gallery") != gallery or normalize_url(document.get("server", "")) != state.server:
            raise StateMismatch(
                f"the report {state.path} is for gallery '{document.get('gallery')}' at {document.get('server')}; "
                "use another report file for this gallery or service"
            )
        state.photos = document.get("photos") or {}
        state.created_at = document.get("created_at") or state.created_at
        return state

    def record(self, file: str) -> dict[str, Any] | None:
        return self.photos.get(file)

    def set(self, file: str, **values: Any) -> dict[str, Any]:
        record = self.photos.setdefault(file, {})
        record.update(values, at=_now())
        self._dirty = True
        return record

    def save(self, *, force: bool = True, every: float = 1.0) -> None:
        """Write the report (unless `force` is False and it was written under `every` s ago)."""
        if self.path is None or not (self._dirty or force):
            return
        if not force and time.monotonic() - self._saved_at < every:
            return
        document = {
            "format": STATE_FORMAT,
            "server": self.server,
            "gallery": self.gallery,
            "created_at": self.created_at,
            "updated_at": _now(),
            "summary": self.summary,
            "photos": self.photos,
            "skipped_files": [
                {"file": skipped.file, "reason": skipped.reason, "advice": skipped.advice}
                for skipped in self.skipped_files
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(document, stream, indent=1, ensure_ascii=False)
            os.replace(temporary, self.path)  # never a half-written report
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._saved_at, self._dirty = time.monotonic(), False


# --- planning ---------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run would do (nothing is sent to make it)."""

    to_send: list[EnrollItem] = field(default_factory=list)
    in_flight: list[EnrollItem] = field(default_factory=list)  # sent by an interrupted run
    done: list[EnrollItem] = field(default_factory=list)
    failed_before: list[EnrollItem] = field(default_factory=list)
    local_errors: list[Failure] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # file -> sha256

    @property
    def persons(self) -> set[tuple[str, str]]:
        return {item.person_key for item in self.to_send + self.in_flight + self.done}


def plan_enrollment(items: Iterable[EnrollItem], state: EnrollState, *, retry_failed: bool = False) -> Plan:
    plan = Plan()
    seen: dict[str, EnrollItem] = {}
    for item in items:
        if item.file in seen:
            plan.local_errors.append(
                Failure(item.file, "duplicate_file", "The file is listed twice; each photo may be enrolled once.")
            )
            continue
        seen[item.file] = item
        if not item.name:
            plan.local_errors.append(Failure(item.file, "missing_name", "The photo has no person name."))
            continue
        try:
            sha = photo_sha256(item.path)
        except FileNotFoundError:
            plan.local_errors.append(Failure(item.file, "file_not_found", f"{item.path} does not exist."))
            continue
        except OSError as exc:
            plan.local_errors.append(Failure(item.file, "unreadable_file", f"{item.path} cannot be read: {exc}."))
            continue
        plan.hashes[item.file] = sha
        record = state.record(item.file)
        same = (
            record is not None
            and record.get("sha256") == sha
            and record.get("name") == item.name
            and record.get("external_id") == item.external_id
        )
        status = record.get("status") if same and record else None
        if status in DONE:
            plan.done.append(item)
        elif status == "submitted" and (record.get("batch_id") or record.get("job_id")):
            plan.in_flight.append(item)
        elif status == "failed" and not retry_failed and (record.get("error") or {}).get("code") not in TRANSIENT_CODES:
            plan.failed_before.append(item)
        else:
            plan.to_send.append(item)
    return plan


# --- the run ------------------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        api: Any,
        items: list[EnrollItem],
        gallery: str,
        state: EnrollState,
        *,
        on_progress: Callable[[ProgressEvent], None] | None,
        batch_size: int,
        max_batch_bytes: int,
        force: bool,
        retry_failed: bool,
        poll_interval: float,
        batch_timeout: float | None,
    ):
        self.api = api
        self.items = items
        self.gallery = gallery
        self.state = state
        self.on_progress = on_progress
        self.batch_size = max(1, min(batch_size, MAX_BATCH_ITEMS))
        self.max_batch_bytes = max_batch_bytes
        self.force = force
        self.retry_failed = retry_failed
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self.by_file = {item.file: item for item in items}
        self.summary = Summary(gallery=gallery, report=state.path)
        self.known_persons: dict[tuple[str, str], str] = {}
        self.accounted: set[str] = set()
        self.hashes: dict[str, str] = {}

    # progress and outcomes

    def _emit(self, item: EnrollItem, outcome: Outcome) -> None:
        if item.file in self.accounted:
            return
        self.accounted.add(item.file)
        summary = self.summary
        if outcome.status == "enrolled":
            summary.enrolled += 1
        elif outcome.status == "duplicate":
            summary.duplicate += 1
        elif outcome.status == "skipped" and outcome.earlier in DONE:
            summary.skipped += 1
        if outcome.person_id:
            summary.persons.add(outcome.person_id)
        if outcome.status == "failed" or (outcome.status == "skipped" and outcome.earlier == "failed"):
            record = self.state.record(item.file) or {}
            details = {k: v for k, v in (record.get("error") or {}).items() if k not in ("code", "message")}
            summary.failed.append(Failure(item.file, outcome.code or "failed", outcome.message or "", details))
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(item, outcome, len(self.accounted), summary.total))

    def _outcome_of(self, record: dict[str, Any], *, skipped: bool = False) -> Outcome:
        error = record.get("error") or {}
        status = record.get("status", "failed")
        return Outcome(
            status="skipped" if skipped else status,
            person_id=record.get("person_id"),
            face_id=record.get("face_id"),
            code=error.get("code"),
            message=error.get("message"),
            earlier=status if skipped else None,
        )

    def _learn(self, item: EnrollItem, person_id: str | None) -> None:
        if person_id:
            self.known_persons[item.person_key] = person_id

    def _base_record(self, item: EnrollItem) -> dict[str, Any]:
        return {"sha256": self.hashes[item.file], "name": item.name, "external_id": item.external_id}

    def _finished(self, item: EnrollItem, *, person_id, face_id, duplicate, error) -> None:
        if error is None:
            status = "duplicate" if duplicate else "enrolled"
            record = self.state.set(
                item.file, status=status, person_id=person_id, face_id=face_id, error=None, batch_id=None, job_id=None
            )
            self._learn(item, person_id)
        else:
            record = self.state.set(item.file, status="failed", person_id=person_id, face_id=None, error=error)
        self.state.save(force=False)
        self._emit(item, self._outcome_of(record))

    def _failed(self, item: EnrollItem, error: errors.FaceAPIError) -> None:
        document = {"code": error.code, "message": error.message, **error.details}
        self._finished(item, person_id=None, face_id=None, duplicate=None, error=document)

    # the steps

    def run(self) -> Summary:
        plan = plan_enrollment(self.items, self.state, retry_failed=self.retry_failed)
        self.hashes = plan.hashes
        self.summary.total = len(self.items)
        for file, record in self.state.photos.items():
            if record.get("status") in DONE and file in self.by_file:
                self._learn(self.by_file[file], record.get("person_id"))
        try:
            for failure in plan.local_errors:
                self.summary.failed.append(failure)
                self.accounted.add(failure.file)
                if self.on_progress is not None and failure.file in self.by_file:
                    outcome = Outcome("failed", code=failure.code, message=failure.message)
                    self.on_progress(
                        ProgressEvent(self.by_file[failure.file], outcome, len(self.accounted), self.summary.total)
                    )
            for item in plan.done + plan.failed_before:
                self._emit(item, self._outcome_of(self.state.record(item.file) or {}, skipped=True))
            self._resume(plan.in_flight)
            self._send(plan.to_send)
        finally:
            self.summary.pending = self.summary.total - len(self.accounted)
            self.state.summary = {**self.summary.as_dict(), "finished": self.summary.pending == 0}
            self.state.save()
        return self.summary

    def _resume(self, items: list[EnrollItem]) -> None:
        """Follow what an interrupted run sent (batches and single jobs) instead of sending it again."""
        lost: list[EnrollItem] = []
        batches: dict[str, list[EnrollItem]] = {}
        for item in items:
            record = self.state.record(item.file) or {}
            if record.get("batch_id"):
                batches.setdefault(record["batch_id"], []).append(item)
            else:
                try:
                    job = self.api.wait(record["job_id"], timeout=self.batch_timeout)
                except errors.NotFound:
                    lost.append(item)  # purged: send it again (the server refuses doubles)
                    continue
                self._job_finished(item, job)
        for batch_id, members in batches.items():
            try:
                self._follow_batch(batch_id, members)
            except errors.NotFound:
                lost.extend(members)
        self._send(lost)

    def _send(self, items: list[EnrollItem]) -> None:
        queue = list(items)
        for item in queue:
            self.state.set(
                item.file, status="pending", **self._base_record(item), batch_id=None, job_id=None, error=None
            )
        while queue:
            direct = [i for i in queue if i.external_id is None and i.person_key in self.known_persons]
            for item in direct:
                self._add_face(item)
            queue = [i for i in queue if i not in direct]
            chunk = self._next_chunk(queue)
            if not chunk:
                continue
            self._send_batch(chunk)
            chunked = {i.file for i in chunk}
            queue = [i for i in queue if i.file not in chunked]

    def _next_chunk(self, queue: list[EnrollItem]) -> list[EnrollItem]:
        """The next batch: whole persons in order while they fit. A person with an external_id may
        be split (the server finds it again by its external_id); one without is split only when
        it alone fills a batch (its further photos go to its id once the batch has made it)."""
        groups: dict[tuple[str, str], list[EnrollItem]] = {}
        for item in queue:
            groups.setdefault(item.person_key, []).append(item)
        chunk: list[EnrollItem] = []
        size = 0
        for key, members in groups.items():
            if key[0] == "name" and chunk and len(members) > self.batch_size - len(chunk):
                break  # a person without external_id that does not fit whole starts the next batch
            for member in members:
                photo_size = _size(member.path)
                if len(chunk) >= self.batch_size or (chunk and size + photo_size > self.max_batch_bytes):
                    return chunk
                chunk.append(member)
                size += photo_size
        return chunk

    def _send_batch(self, chunk: list[EnrollItem]) -> None:
        photos, keys = [], []
        for item in chunk:
            try:
                data = item.path.read_bytes()
            except OSError as exc:
                self._failed(item, errors.FaceAPIError("unreadable_file", f"{item.path} cannot be read: {exc}."))
                continue
            if hashlib.sha256(data).hexdigest() != self.hashes[item.file]:
                self._failed(item, errors.FaceAPIError("file_changed", f"{item.path} changed during the run."))
                continue
            photos.append((item.file, data, item.name, item.external_id))
            keys.append(
                item.file + "\x00" + photo_key(self.gallery, self.hashes[item.file], item.name, item.external_id)
            )
        if not photos:
            return
        digest = hashlib.sha256(("\x01".join(keys) + f"\x02{self.gallery}\x02{self.force}").encode())
        sent = [self.by_file[file] for file, *_ in photos]
        try:
            accepted = self.api.submit_batch(
                photos,
                gallery=self.gallery,
                force=self.force,
                idempotency_key="faceapi-batch-" + digest.hexdigest()[:48],
            )
        except (errors.BadRequest, errors.PayloadTooLarge, errors.Conflict) as refused:
            if len(sent) > 1 and isinstance(refused, errors.PayloadTooLarge):
                half = len(sent) // 2
                self._send_batch(sent[:half])
                self._send_batch(sent[half:])
                return
            for item in sent:
                self._failed(item, refused)
            return
        for item in sent:
            self.state.set(item.file, status="submitted", batch_id=accepted.batch_id, job_id=None)
        self.state.save()  # before waiting: a rerun follows this batch instead of sending it again
        self._follow_batch(accepted.batch_id, sent)

    def _follow_batch(self, batch_id: str, members: list[EnrollItem]) -> None:
        waiting = {item.file: item for item in members}

        def update(batch: models.Batch) -> None:
            for entry in batch.items or []:
                item = waiting.get(entry.file or "")
                if item is None or not entry.ended:
                    continue
                del waiting[item.file]
                error = entry.error.model_dump() if entry.error is not None and entry.status == "failed" else None
                if entry.status == "failed" and error is None:
                    error = {"code": "failed", "message": "The enrollment failed."}
                self._finished(
                    item, person_id=entry.person_id, face_id=entry.face_id, duplicate=entry.duplicate, error=error
                )

        self.api.wait_batch(batch_id, timeout=self.batch_timeout, on_update=update, interval=self.poll_interval)
        for item in waiting.values():  # not in the batch's items (should not happen): send again later
            self.state.set(item.file, status="pending", batch_id=None)

    def _add_face(self, item: EnrollItem) -> None:
        person_id = self.known_persons[item.person_key]
        key = photo_key(self.gallery, self.hashes[item.file], item.name, item.external_id) + "-" + person_id[:8]
        try:
            data = item.path.read_bytes()
            submitted = self.api.submit_face(person_id, data, force=self.force, idempotency_key=key, wait=30)
        except OSError as exc:
            self._failed(item, errors.FaceAPIError("unreadable_file", f"{item.path} cannot be read: {exc}."))
            return
        except errors.NotFound:
            # The person was deleted since: forget it, the photo goes in a batch that makes it again.
            self.known_persons.pop(item.person_key, None)
            self._send_batch([item])
            return
        except (errors.BadRequest, errors.PayloadTooLarge, errors.UnsupportedMediaType, errors.Conflict) as refused:
            self._failed(item, refused)
            return
        job_id = submitted.job_id if isinstance(submitted, models.Accepted) else submitted.id
        self.state.set(item.file, status="submitted", job_id=job_id, batch_id=None)
        self.state.save()
        self._job_finished(item, self.api.wait(submitted, timeout=self.batch_timeout))

    def _job_finished(self, item: EnrollItem, job: models.Job) -> None:
        result = job.result if isinstance(job.result, models.EnrollResult) else None
        error = job.error.model_dump() if job.error is not None and job.status == "failed" else None
        self._finished(
            item,
            person_id=result.person_id if result else job.person_id,
            face_id=result.face_id if result else None,
            duplicate=result.duplicate if result else None,
            error=error,
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def enroll_photos(
    api: Any,
    items: Iterable[EnrollItem | tuple],
    gallery: str = "default",
    *,
    state: str | os.PathLike | EnrollState | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    batch_size: int = 50,
    max_batch_bytes: int = 64 * 1024 * 1024,
    force: bool = False,
    retry_failed: bool = False,
    poll_interval: float = 0.5,
    batch_timeout: float | None = 1800,
) -> Summary:
    """Enroll `items` (EnrollItem, or (photo path, name, external_id) tuples) into `gallery`.

    `state`: the report file that makes the run resumable (None: kept in memory only; the
    server's rules still refuse doubles). `on_progress` is called once per photo as its outcome
    is known (photos done in an earlier run come first, as `skipped`). Photos that failed for a
    reason of their own (no_face, multiple_faces, ...) are not sent again unless
    `retry_failed`; those that failed for a passing reason (timeout, ...) are.

    Interrupt it whenever (KeyboardInterrupt propagates after the state is saved) and run it
    again with the same arguments: it goes on where it stopped. Returns the Summary.
    """
    chosen: list[EnrollItem] = []
    for entry in items:
        if isinstance(entry, EnrollItem):
            chosen.append(entry)
        else:
            path, name, *rest = entry
            chosen.append(EnrollItem(path=Path(path), name=name, external_id=rest[0] if rest else None))
    opened = state if isinstance(state, EnrollState) else EnrollState.open(state, api.url, gallery)
    return _Run(
        api,
        chosen,
        gallery,
        opened,
        on_progress=on_progress,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        force=force,
        retry_failed=retry_failed,
        poll_interval=poll_interval,
        batch_timeout=batch_timeout,
    ).run()


def iter_failures(state: EnrollState) -> Iterator[Failure]:
    for file, record in sorted(state.photos.items()):
        if record.get("status") == "failed":
            error = record.get("error") or {}
            yield Failure(file, error.get("code", "failed"), error.get("message", ""))

"""`FaceAPI`: one method per call of the service's API v1, with typed results.

    from faceapi_client import FaceAPI

    api = FaceAPI("http://127.0.0.1:8000", email="ops@example.com", password="...")
    # or FaceAPI(url, api_key="fk_...") or FaceAPI.from_env()
    job = api.enroll_person("ada.jpg", name="Ada Lovelace", external_id="emp-42", gallery="staff")
    result = api.recognize("team.jpg", gallery="staff").result
    for face in result.faces:
        print(face.bbox, face.best.name if face.best else "unknown")

Submissions (`enroll_person`, `add_face`, `recognize`, `verify`, `enroll_me`) send the photo
with `?wait=N`, so a job that ends quickly comes back in the same request; otherwise they
long-poll `GET /jobs/{id}?wait=30` until it ends. They raise `JobFailed` (code `no_face`,
`face_mismatch`, ...) when the job fails, unless `raise_on_failure=False`. The `submit_*`
variants return at once with the job's id (`wait(job_id)` later). Every POST that creates
something carries an `Idempotency-Key` (a fresh UUID unless you pass `idempotency_key=`), so
a retry after a broken connection never creates anything twice.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx

from faceapi_client import errors, models
from faceapi_client._http import Credentials, Transport, new_idempotency_key
from faceapi_client.errors import retry_after_seconds

Photo = str | os.PathLike | bytes | bytearray | IO[bytes]
MAX_WAIT = 30  # the server's longest ?wait=
_JOB_MODELS: dict[str, type[models.Job]] = {
    "enroll": models.EnrollJob,
    "recognize": models.RecognizeJob,
    "verify": models.VerifyJob,
    "detect": models.DetectJob,
}


def parse_job(data: dict[str, Any]) -> models.Job:
    """The job document as the model of its type (EnrollJob, RecognizeJob, VerifyJob, DetectJob)."""
    return _JOB_MODELS.get(str(data.get("type")), models.Job).model_validate(data)


def sniff_content_type(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def read_photo(photo: Photo, default_name: str = "photo") -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of a path, bytes or binary file object."""
    if isinstance(photo, bytes | bytearray):
        data, name = bytes(photo), default_name
    elif isinstance(photo, str | os.PathLike):
        path = Path(photo)
        data, name = path.read_bytes(), path.name
    elif hasattr(photo, "read"):
        data = photo.read()
        name = Path(getattr(photo, "name", "") or default_name).name
    else:
        raise TypeError(f"A photo is a path, bytes or a binary file, not {type(photo).__name__}.")
    content_type = sniff_content_type(data)
    if "." not in name and content_type.startswith("image/"):
        name += "." + content_type.split("/")[1].replace("jpeg", "jpg")
    return name, data, content_type


def _form(**fields: Any) -> dict[str, str]:
    """Multipart form fields as the API reads them: text, booleans as true/false, None left out."""
    form = {}
    for name, value in fields.items():
        if value is None:
            continue
        form[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return form


def _target_face(box: str | Sequence[float] | None) -> str | None:
    """A target face as the API reads it: `x,y,w,h` (given as that text or as four numbers)."""
    if box is None or isinstance(box, str):
        return box
    if len(box) != 4:
        raise ValueError("target_face is x, y, w, h: four numbers in the photo's pixels")
    return ",".join(f"{float(v):g}" for v in box)


def _id(value: Any, attribute: str = "id") -> str:
    """An id given as a string, a UUID or a model carrying it (a Job, an Accepted, a Person)."""
    if isinstance(value, str):
        return value
    for name in (attribute, "job_id", "id"):
        if getattr(value, name, None):
            return str(getattr(value, name))
    return str(value)


class FaceAPI:
    """A client of one service. Authenticate with `api_key` (`fk_...`), or `email` and `password`
    (logged in on first use; the 15-minute access token is refreshed by itself before it expires
    and on a 401 `token_expired`), or tokens you already hold.

    `max_retries` bounds retries of 429 / 503 answers (after `Retry-After`) and of broken
    connections on idempotent calls, `connect_retries` those of a connection refused (the
    service down: fail within seconds); a `Retry-After` longer than `max_retry_wait` seconds is
    not waited out but raised (`RateLimited`, `ServiceUnavailable`).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        email: str | None = None,
        password: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        connect_retries: int = 3,
        max_retry_wait: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ):
        self.credentials = Credentials(
            api_key=api_key, email=email, password=password, access_token=access_token, refresh_token=refresh_token
        )
        self._t = Transport(
            url,
            self.credentials,
            timeout=timeout,
            max_retries=max_retries,
            connect_retries=connect_retries,
            max_retry_wait=max_retry_wait,
            transport=transport,
            verify=verify,
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> FaceAPI:
        """FACEAPI_URL, and FACEAPI_API_KEY or FACEAPI_EMAIL / FACEAPI_PASSWORD."""
        settings: dict[str, Any] = {
            "url": os.environ.get("FACEAPI_URL") or "http://127.0.0.1:8000",
            "api_key": os.environ.get("FACEAPI_API_KEY") or None,
            "email": os.environ.get("FACEAPI_EMAIL") or None,
            "password": os.environ.get("FACEAPI_PASSWORD") or None,
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(settings.pop("url"), **settings)

    @property
    def url(self) -> str:
        """The service's base URL (without /api/v1)."""
        return self._t.base_url

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> FaceAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> Any:
        return self._t.request("GET", path, params=params).json()

    def _pages(self, fetch: Callable[[str | None], Any]) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page = fetch(cursor)
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    # --- authentication and the caller's account -------------------------------------------------

    def login(self, email: str | None = None, password: str | None = None) -> models.Tokens:
        """Log in now (otherwise the first call does). Raises AuthenticationError `invalid_credentials`."""
        if email is not None:
            self.credentials.email = email
        if password is not None:
            self.credentials.password = password
        return models.Tokens.model_validate(self._t.login())

    def refresh(self) -> models.Tokens:
        """A new access token from the refresh token (done by itself when needed)."""
        self._t.renew()
        c = self.credentials
        return models.Tokens(access_token=c.access_token or "", refresh_token=c.refresh_token)

    def logout(self) -> None:
        """Revoke the access and refresh tokens held (the server's denylist)."""
        c = self.credentials
        for token in (c.access_token, c.refresh_token):
            if token:
                with contextlib.suppress(errors.AuthenticationError):  # expired already
                    self._t.request("POST", "/auth/logout", auth=False, bearer=token, idempotent=True)
        c.access_token = c.refresh_token = c.access_expires_at = None

    def signup(self, email: str, password: str) -> models.Account:
        response = self._t.request("POST", "/auth/signup", json={"email": email, "password": password}, auth=False)
        return models.Account.model_validate(response.json())

    def me(self) -> models.Account:
        return models.Account.model_validate(self._get("/auth/me"))

    def change_password(self, current_password: str, new_password: str) -> models.Tokens:
        """Every older token is revoked; the client keeps working with the new ones."""
        response = self._t.request(
            "POST", "/auth/password", json={"current_password": current_password, "new_password": new_password}
        )
        tokens = response.json()
        self.credentials.store(tokens)
        if self.credentials.password is not None:
            self.credentials.password = new_password
        return models.Tokens.model_validate(tokens)

    def delete_me(self, password: str) -> None:
        """Erase the caller's account (its face profile and jobs; the last account of an
        organisation takes the organisation's galleries with it). The current password confirms it."""
        self._t.request("DELETE", "/auth/me", json={"password": password}, gone_ok=True)

    def enroll_me(
        self,
        photo: Photo,
        *,
        name: str | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
    ) -> models.EnrollJob:
        """Enroll the caller's own face profile (consent given) and wait for the job."""
        form = _form(name=name, consent=True, webhook_url=webhook_url)
        submit = partial(self._submit, "/auth/me/face", form, [("image", read_photo(photo))], idempotency_key)
        return self._submit_and_wait(submit, timeout, raise_on_failure)  # type: ignore[return-value]

    # --- API keys ----------------------------------------------------------------------------------

    def create_api_key(
        self,
        name: str,
        role: str = "operator",
        *,
        galleries: list[str] | None = None,
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> models.ApiKey:
        """A new API key; its secret (`.key`, `fk_...`) is in this answer only."""
        body: dict[str, Any] = {"name": name, "role": role}
        if galleries is not None:
            body["galleries"] = list(galleries)
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        response = self._t.request(
            "POST", "/api-keys", json=body, idempotency_key=idempotency_key or new_idempotency_key()
        )
        return models.ApiKey.model_validate(response.json())

    def list_api_keys(self) -> list[models.ApiKey]:
        return models.ApiKeyList.model_validate(self._get("/api-keys")).items

    def revoke_api_key(self, key_id: str) -> None:
        self._t.request("DELETE", f"/api-keys/{_id(key_id)}", gone_ok=True)

    # --- admins: accounts and the audit log --------------------------------------------------------

    def list_accounts(self, *, limit: int = 50, cursor: str | None = None) -> models.AccountPage:
        return models.AccountPage.model_validate(self._get("/accounts", limit=limit, cursor=cursor))

    def iter_accounts(self) -> Iterator[models.Account]:
        return self._pages(lambda cursor: self.list_accounts(limit=200, cursor=cursor))

    def change_role(self, account_id: str, role: str) -> models.Account:
        response = self._t.request("PATCH", f"/accounts/{_id(account_id)}", json={"role": role})
        return models.Account.model_validate(response.json())

    def delete_account(self, account_id: str) -> None:
        self._t.request("DELETE", f"/accounts/{_id(account_id)}", gone_ok=True)

    def audit(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> models.AuditPage:
        """Filters: actor_id, action, target_id, since, until (datetimes or ISO strings)."""
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}
        return models.AuditPage.model_validate(self._get("/audit", limit=limit, cursor=cursor, **params))

    # --- galleries ----------------------------------------------------------------------------------

    def create_gallery(self, name: str, *, match_threshold: float | None = None) -> models.Gallery:
        body: dict[str, Any] = {"name": name}
        if match_threshold is not None:
            body["match_threshold"] = match_threshold
        return models.Gallery.model_validate(self._t.request("POST", "/galleries", json=body).json())

    def list_galleries(self, *, limit: int = 50, cursor: str | None = None) -> models.GalleryPage:
        return models.GalleryPage.model_validate(self._get("/galleries", limit=limit, cursor=cursor))

    def iter_galleries(self) -> Iterator[models.Gallery]:
        return self._pages(lambda cursor: self.list_galleries(limit=200, cursor=cursor))

    def set_gallery_threshold(self, name: str, match_threshold: float | None) -> models.Gallery:
        """Fix the gallery's recognition threshold, or (None) let the service derive it again."""
        response = self._t.request("PATCH", f"/galleries/{name}", json={"match_threshold": match_threshold})
        return models.Gallery.model_validate(response.json())

    def delete_gallery(self, name: str) -> None:
        """Delete a gallery with its persons, faces and jobs."""
        self._t.request("DELETE", f"/galleries/{name}", gone_ok=True)

    # --- gallery export, import and re-embedding (docs/EXPORT.md) ------------------------------------

    def submit_gallery_export(self, name: str) -> models.Accepted:
        """POST /galleries/{name}/export: a job whose result names the archive's download."""
        return models.Accepted.model_validate(self._t.request("POST", f"/galleries/{name}/export").json())

    def download_export(self, export_id: str) -> bytes:
        """The archive an export wrote (Gone `export_expired` once its time is over)."""
        return self._t.request(
            "GET", f"/exports/{_id(export_id, 'export_id')}", timeout=max(self._t.timeout, 300)
        ).content

    def export_gallery(
        self, name: str, *, timeout: float | None = None, on_progress: Callable[[models.Job], None] | None = None
    ) -> bytes:
        """Export the gallery and download its archive (raises the job's error if it failed)."""
        job = self.follow(self.submit_gallery_export(name), timeout=timeout, on_progress=on_progress)
        return self.download_export(job.result["export_id"])

    def submit_gallery_import(self, name: str, archive: Photo, *, on_conflict: str = "skip") -> models.Accepted:
        """POST /galleries/{name}/import with an archive (a path, bytes or a file); a bad archive is
        refused at once (BadRequest `invalid_archive` with its `reason`)."""
        filename, data, _ = read_photo(archive, "gallery.zip")
        response = self._t.request(
            "POST",
            f"/galleries/{name}/import",
            data=_form(on_conflict=on_conflict),
            files=[("archive", (filename, data, "application/zip"))],
            timeout=max(self._t.timeout, 300),
        )
        return models.Accepted.model_validate(response.json())

    def import_gallery(
        self,
        name: str,
        archive: Photo,
        *,
        on_conflict: str = "skip",
        timeout: float | None = None,
        on_progress: Callable[[models.Job], None] | None = None,
    ) -> models.Job:
        """Import an archive into the gallery (created if needed) and wait for the result."""
        accepted = self.submit_gallery_import(name, archive, on_conflict=on_conflict)
        return self.follow(accepted, timeout=timeout, on_progress=on_progress)

    def submit_reembed(self, name: str, *, skip_missing: bool = False) -> models.Accepted:
        """POST /galleries/{name}/reembed: embed every face again with the workers' current model."""
        params = {"skip_missing": "true"} if skip_missing else None
        return models.Accepted.model_validate(
            self._t.request("POST", f"/galleries/{name}/reembed", params=params).json()
        )

    def reembed_gallery(
        self,
        name: str,
        *,
        skip_missing: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[models.Job], None] | None = None,
    ) -> models.Job:
        """Re-embed the gallery and wait for the switch (raises the job's error if it failed)."""
        return self.follow(
            self.submit_reembed(name, skip_missing=skip_missing), timeout=timeout, on_progress=on_progress
        )

    def follow(
        self, job: Any, *, timeout: float | None = None, on_progress: Callable[[models.Job], None] | None = None
    ) -> models.Job:
        """Wait for a long job, calling `on_progress` with it about every second (its `progress`:
        {"done", "total"} while it runs); raises the job's error if it failed."""
        job_id = _id(job, "job_id")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current, pause = self._poll_job(job_id, 1.0)
            if on_progress is not None:
                on_progress(current)
            if current.ended:
                if current.status == "failed":
                    raise errors.JobFailed(current)
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout(
                    "wait_timeout", f"Job {job_id} is still {current.status}.", details={"job": job_id}
                )
            time.sleep(pause)

    # --- recurring unknown faces (docs/UNKNOWNS.md) -------------------------------------------------

    def set_gallery_unknowns(self, name: str, enabled: bool, *, retention_days: int = 30) -> models.Gallery:
        """Turn the gallery's recurring-unknowns pool on (faces of people who did not consent, kept
        `retention_days`) or off (which deletes the pool)."""
        body = {"unknowns": {"enabled": enabled, "retention_days": retention_days}}
        return models.Gallery.model_validate(self._t.request("PATCH", f"/galleries/{name}", json=body).json())

    def list_unknowns(
        self, gallery: str, *, order: str = "last_seen", limit: int = 50, offset: int = 0
    ) -> models.UnknownGroupPage:
        """The gallery's strangers, most recently seen (or, order="count", most seen) first."""
        data = self._get(f"/galleries/{gallery}/unknowns", order=order, limit=limit, offset=offset)
        return models.UnknownGroupPage.model_validate(data)

    def get_unknown(self, gallery: str, unknown_id: int) -> models.UnknownGroupFaces:
        return models.UnknownGroupFaces.model_validate(self._get(f"/galleries/{gallery}/unknowns/{unknown_id}"))

    def unknown_face_crop(self, gallery: str, unknown_id: int, face_id: str) -> bytes:
        """A stranger's face as its aligned 112x112 JPEG crop."""
        path = f"/galleries/{gallery}/unknowns/{unknown_id}/faces/{face_id}/crop"
        return self._t.request("GET", path).content

    def enroll_unknown(
        self,
        gallery: str,
        unknown_id: int,
        name: str,
        *,
        external_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> models.UnknownEnrolled:
        """Name a stranger: a person made from the group's best faces (you confirm consent)."""
        body: dict[str, Any] = {"name": name, "consent": True, "metadata": metadata or {}}
        if external_id is not None:
            body["external_id"] = external_id
        response = self._t.request("POST", f"/galleries/{gallery}/unknowns/{unknown_id}/enroll", json=body)
        return models.UnknownEnrolled.model_validate(response.json())

    def merge_unknowns(self, gallery: str, unknown_id: int, into: int) -> models.UnknownGroupFaces:
        """One stranger seen as two: `unknown_id`'s faces join `into`, which keeps its id."""
        path = f"/galleries/{gallery}/unknowns/{unknown_id}/merge"
        return models.UnknownGroupFaces.model_validate(self._t.request("POST", path, json={"into": into}).json())

    def delete_unknown(self, gallery: str, unknown_id: int) -> None:
        self._t.request("DELETE", f"/galleries/{gallery}/unknowns/{unknown_id}", gone_ok=True)

    # --- persons and faces -------------------------------------------------------------------------

    def submit_enrollment(
        self,
        photo: Photo,
        *,
        name: str,
        gallery: str = "default",
        external_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
        target_face: str | Sequence[float] | None = None,
        force: bool = False,
    ) -> models.Accepted | models.EnrollJob:
        """POST /persons (consent given): the Accepted {person_id, job_id}; with `wait` > 0 the
        finished job when it ends within that many seconds (at most 30). `target_face` (x, y, w, h)
        chooses the face of a photo with several; `force` enrolls a face that another person of the
        gallery already has (ENROLL_DUPLICATE_IDENTITY=refuse), audited."""
        form = _form(
            name=name,
            consent=True,
            gallery=gallery,
            external_id=external_id,
            webhook_url=webhook_url,
            target_face=_target_face(target_face),
            force=force or None,
        )
        return self._submit("/persons", form, [("image", read_photo(photo))], idempotency_key, wait=wait)

    def enroll_person(
        self,
        photo: Photo,
        *,
        name: str,
        gallery: str = "default",
        external_id: str | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        target_face: str | Sequence[float] | None = None,
        force: bool = False,
    ) -> models.EnrollJob:
        """Register a person from one photo and wait for the job. An `external_id` that exists
        already raises Conflict `person_exists` with `err.person_id` (use `add_face`). A photo with
        several faces fails `multiple_faces` (its `target_faces` list them): send one as
        `target_face` (x, y, w, h, or the "x,y,w,h" text) to enroll that face."""
        submit = partial(
            self.submit_enrollment,
            photo,
            name=name,
            gallery=gallery,
            external_id=external_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            target_face=target_face,
            force=force,
        )
        return self._submit_and_wait(submit, timeout, raise_on_failure)  # type: ignore[return-value]

    def submit_face(
        self,
        person_id: str,
        photo: Photo,
        *,
        force: bool = False,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
        target_face: str | Sequence[float] | None = None,
    ) -> models.Accepted | models.EnrollJob:
        form = _form(force=force or None, webhook_url=webhook_url, target_face=_target_face(target_face))
        path = f"/persons/{_id(person_id)}/faces"
        return self._submit(path, form, [("image", read_photo(photo))], idempotency_key, wait=wait)

    def add_face(
        self,
        person_id: str,
        photo: Photo,
        *,
        force: bool = False,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        target_face: str | Sequence[float] | None = None,
    ) -> models.EnrollJob:
        """Add another photo of a person and wait. A face unlike the person's fails
        `face_mismatch` (`force=True` enrolls it anyway, audited); the same photo again succeeds
        with `result.duplicate` true and adds nothing. `target_face` chooses the face of a group."""
        submit = partial(
            self.submit_face,
            person_id,
            photo,
            force=force,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            target_face=target_face,
        )
        return self._submit_and_wait(submit, timeout, raise_on_failure)  # type: ignore[return-value]

    def list_persons(
        self,
        gallery: str = "default",
        *,
        external_id: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> models.PersonPage:
        """A page of the gallery's persons; `q` keeps those whose name or external_id contains it (any case)."""
        page = self._get("/persons", gallery=gallery, external_id=external_id, q=q, limit=limit, cursor=cursor)
        return models.PersonPage.model_validate(page)

    def iter_persons(
        self, gallery: str = "default", *, external_id: str | None = None, q: str | None = None
    ) -> Iterator[models.Person]:
        return self._pages(
            lambda cursor: self.list_persons(gallery, external_id=external_id, q=q, limit=200, cursor=cursor)
        )

    def find_person(self, external_id: str, gallery: str = "default") -> models.Person | None:
        """The gallery's person with this external_id, or None."""
        items = self.list_persons(gallery, external_id=external_id, limit=1).items
        return items[0] if items else None

    def get_person(self, person_id: str) -> models.Person:
        """A person with its faces and consent record."""
        return models.Person.model_validate(self._get(f"/persons/{_id(person_id)}"))

    def update_person(self, person_id: str, **changes: Any) -> models.Person:
        """Change `name`, `external_id` (None removes it) or `metadata` (replaced whole)."""
        unknown = set(changes) - {"name", "external_id", "metadata"}
        if unknown:
            raise TypeError(f"update_person() got unexpected field(s): {', '.join(sorted(unknown))}")
        response = self._t.request("PATCH", f"/persons/{_id(person_id)}", json=changes)
        return models.Person.model_validate(response.json())

    def delete_person(self, person_id: str) -> None:
        """Delete a person and every embedding of it."""
        self._t.request("DELETE", f"/persons/{_id(person_id)}", gone_ok=True)

    def list_faces(self, person_id: str) -> list[models.Face]:
        return models.FaceList.model_validate(self._get(f"/persons/{_id(person_id)}/faces")).items

    def delete_face(self, person_id: str, face_id: str) -> None:
        """Remove one embedding of a person (a wrong photo); searches stop using it at once."""
        self._t.request("DELETE", f"/persons/{_id(person_id)}/faces/{_id(face_id)}", gone_ok=True)

    def get_face_crop(self, person_id: str, face_id: str) -> bytes:
        """The face's aligned 112x112 crop, as JPEG bytes (NotFound `crop_not_found` for a face kept without one)."""
        return self._t.request("GET", f"/persons/{_id(person_id)}/faces/{_id(face_id)}/crop").content

    def move_face(self, person_id: str, face_id: str, to_person_id: str) -> models.Person:
        """Give one face of a person to another person of the same gallery (audited); the receiving person."""
        path = f"/persons/{_id(person_id)}/faces/{_id(face_id)}/move"
        response = self._t.request("POST", path, json={"person_id": _id(to_person_id)})
        return models.Person.model_validate(response.json())

    def merge_persons(self, person_id: str, into: str) -> models.Person:
        """Merge a person enrolled twice into the other (same gallery): every face moves to `into`,
        `person_id` is deleted (audited); the person merged into."""
        response = self._t.request("POST", f"/persons/{_id(person_id)}/merge", json={"into": _id(into)})
        return models.Person.model_validate(response.json())

    # --- batch enrollment --------------------------------------------------------------------------

    def submit_batch(
        self,
        photos: list[tuple[Any, ...]],
        *,
        gallery: str = "default",
        force: bool = False,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.BatchAccepted:
        """POST /enrollments: `photos` are (file name, photo, name, external_id[, target_face]); file
        names must be unique within the batch (e.g. the path relative to the folder). Answers at once;
        `wait_batch` follows it. For folders and resumable runs use `enroll_photos`."""
        manifest, files = [], []
        for file, photo, name, external_id, *choice in photos:
            _, data, content_type = read_photo(photo)
            row = {"file": file, "name": name}
            if external_id:
                row["external_id"] = external_id
            if choice and choice[0] is not None:
                row["target_face"] = _target_face(choice[0])
            manifest.append(row)
            files.append(("images", (file, data, content_type)))
        return self._post_batch(
            manifest, files, gallery=gallery, force=force, webhook_url=webhook_url, idempotency_key=idempotency_key
        )

    def submit_archive(
        self,
        archive: Photo,
        *,
        gallery: str = "default",
        force: bool = False,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> models.BatchAccepted:
        """POST /enrollments with a ZIP laid out as <person name>/<photo>."""
        name, data, _ = read_photo(archive, "photos.zip")
        form = _form(consent=True, gallery=gallery, force=force or None, webhook_url=webhook_url)
        response = self._t.request(
            "POST",
            "/enrollments",
            data=form,
            files=[("archive", (name, data, "application/zip"))],
            idempotency_key=idempotency_key or new_idempotency_key(),
            timeout=max(self._t.timeout, 300),
        )
        return models.BatchAccepted.model_validate(response.json())

    def _post_batch(
        self,
        manifest: list[dict[str, Any]],
        files: list[tuple[str, tuple[str, bytes, str]]],
        *,
        gallery: str,
        force: bool,
        webhook_url: str | None,
        idempotency_key: str | None,
    ) -> models.BatchAccepted:
        import json

        form = _form(
            consent=True,
            gallery=gallery,
            force=force or None,
            webhook_url=webhook_url,
            manifest=json.dumps(manifest, ensure_ascii=False),
        )
        response = self._t.request(
            "POST",
            "/enrollments",
            data=form,
            files=files,
            idempotency_key=idempotency_key or new_idempotency_key(),
            timeout=max(self._t.timeout, 300),
        )
        return models.BatchAccepted.model_validate(response.json())

    def get_batch(self, batch_id: str) -> models.Batch:
        """A batch with its items in manifest order."""
        return models.Batch.model_validate(self._get(f"/enrollments/{_id(batch_id, 'batch_id')}"))

    def list_batches(self, *, limit: int = 50, cursor: str | None = None) -> models.BatchPage:
        return models.BatchPage.model_validate(self._get("/enrollments", limit=limit, cursor=cursor))

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout: float | None = 600,
        on_update: Callable[[models.Batch], None] | None = None,
        interval: float = 0.5,
    ) -> models.Batch:
        """Poll a batch until every item has ended (`on_update` sees each poll)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        batch_id = _id(batch_id, "batch_id")
        while True:
            batch = self.get_batch(batch_id)
            if on_update is not None:
                on_update(batch)
            if batch.ended:
                return batch
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout("wait_timeout", f"Batch {batch_id} is still {batch.status} after {timeout}s.")
            time.sleep(interval)
            interval = min(interval * 1.5, 3.0)

    def enroll_photos(self, items: Any, gallery: str = "default", **options: Any) -> Any:
        """Enroll many photos resumably: see `faceapi_client.enroll.enroll_photos`."""
        from faceapi_client.enroll import enroll_photos

        return enroll_photos(self, items, gallery, **options)

    # --- recognition and verification -----------------------------------------------------------

    def submit_recognition(
        self,
        photo: Photo,
        *,
        gallery: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        max_faces: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
        source: str | None = None,
    ) -> models.Accepted | models.RecognizeJob:
        form = _form(
            gallery=gallery,
            threshold=threshold,
            top_k=top_k,
            max_faces=max_faces,
            webhook_url=webhook_url,
            source=source,
        )
        return self._submit("/recognize", form, [("image", read_photo(photo))], idempotency_key, wait=wait)

    def _recognition(self, submit: Callable[..., Any], photos: Any, timeout: float, raise_on_failure: bool, **options):
        """A recognition of one photo or several (submit_recognition or _many), waited for."""
        return self._submit_and_wait(partial(submit, photos, **options), timeout, raise_on_failure)

    def recognize(
        self,
        photo: Photo,
        *,
        gallery: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        max_faces: int | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> models.RecognizeJob:
        """Every face in the photo, largest first, each with its matches best first. A photo
        without a face raises JobFailed `no_face`; an unknown gallery NotFound `gallery_not_found`.
        `source` (a camera or door name) is kept with unmatched faces where recurring unknowns are on."""
        options = {"threshold": threshold, "top_k": top_k, "max_faces": max_faces, "webhook_url": webhook_url}
        return self._recognition(  # type: ignore[return-value]
            self.submit_recognition, photo, timeout, raise_on_failure,
            gallery=gallery, idempotency_key=idempotency_key, source=source, **options,
        )  # fmt: skip

    def submit_recognition_many(
        self,
        photos: Sequence[Photo],
        *,
        gallery: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        max_faces: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
        source: str | None = None,
    ) -> models.Accepted | models.RecognizeJob:
        fields = {"threshold": threshold, "top_k": top_k, "max_faces": max_faces, "webhook_url": webhook_url}
        form = _form(gallery=gallery, source=source, **fields)
        parts = [("images", read_photo(photo)) for photo in photos]
        return self._submit("/recognize", form, parts, idempotency_key, wait=wait)

    def recognize_many(
        self,
        photos: Sequence[Photo],
        *,
        gallery: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        max_faces: int | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> models.RecognizeJob:
        """Several photos (at most the server's RECOGNIZE_MAX_IMAGES, 32 by default) in one job:
        `result.photos` lists each photo's faces in the order sent; a photo that cannot be read or
        shows no face has its own `error` and does not fail the others (`result.photo_result(i)`
        is photo i as `recognize` would return it). One job, one webhook."""
        options = {"threshold": threshold, "top_k": top_k, "max_faces": max_faces, "webhook_url": webhook_url}
        return self._recognition(  # type: ignore[return-value]
            self.submit_recognition_many, photos, timeout, raise_on_failure,
            gallery=gallery, idempotency_key=idempotency_key, source=source, **options,
        )  # fmt: skip

    def search(
        self,
        face_id: str,
        *,
        gallery: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> models.SearchResult:
        """The persons a stored face (its id: `list_faces`) matches, best first, without a photo: in
        its own gallery, or `gallery`. The face itself is left out; its person's other faces are not."""
        body: dict[str, Any] = {"face_id": _id(face_id)}
        body.update(
            {k: v for k, v in {"gallery": gallery, "top_k": top_k, "threshold": threshold}.items() if v is not None}
        )
        response = self._t.request("POST", "/search", json=body, idempotent=True)
        return models.SearchResult.model_validate(response.json())

    def submit_detection(
        self,
        photo: Photo,
        *,
        max_faces: int | None = None,
        landmarks: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.Accepted | models.DetectJob:
        form = _form(max_faces=max_faces, landmarks=landmarks, webhook_url=webhook_url)
        return self._submit("/detect", form, [("image", read_photo(photo))], idempotency_key, wait=wait)

    def detect(
        self,
        photo: Photo,
        *,
        max_faces: int | None = None,
        landmarks: int | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
    ) -> models.DetectJob:
        """Every face in the photo, largest first: box, keypoints, head pose, quality and
        `quality_for_recognition`; `landmarks=106` adds 106 landmarks. No gallery is needed, and a
        photo without a face succeeds with none."""
        submit = partial(
            self.submit_detection,
            photo,
            max_faces=max_faces,
            landmarks=landmarks,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
        )
        return self._submit_and_wait(submit, timeout, raise_on_failure)  # type: ignore[return-value]

    def submit_verification(
        self,
        photo: Photo,
        other: Photo | None = None,
        *,
        person_id: str | None = None,
        threshold: float | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float = 0,
    ) -> models.Accepted | models.VerifyJob:
        if (other is None) == (person_id is None):
            raise TypeError("verify needs a second photo or a person_id (not both).")
        if other is not None:
            files = [("image_a", read_photo(photo, "a")), ("image_b", read_photo(other, "b"))]
        else:
            files = [("image", read_photo(photo))]
        form = _form(person_id=_id(person_id) if person_id else None, threshold=threshold, webhook_url=webhook_url)
        return self._submit("/verify", form, files, idempotency_key, wait=wait)

    def verify(
        self,
        photo: Photo,
        other: Photo | None = None,
        *,
        person_id: str | None = None,
        threshold: float | None = None,
        webhook_url: str | None = None,
        timeout: float = 300,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
    ) -> models.VerifyJob:
        """Are two photos (or a photo and an enrolled person) the same person? `result.same_person`."""
        submit = partial(
            self.submit_verification,
            photo,
            other,
            person_id=person_id,
            threshold=threshold,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
        )
        return self._submit_and_wait(submit, timeout, raise_on_failure)  # type: ignore[return-value]

    # --- jobs --------------------------------------------------------------------------------------

    def get_job(self, job_id: str, *, wait: float = 0) -> models.Job:
        """A job; with `wait` (at most 30) the server answers as soon as it ends."""
        return self._poll_job(job_id, wait)[0]

    def _poll_job(self, job_id: str, wait: float) -> tuple[models.Job, float]:
        """The job, and the seconds to pause before the next poll: the server's `Retry-After` when
        it refused the wait (too many under way), else 0."""
        wait = min(max(wait, 0), MAX_WAIT)
        response = self._t.request(
            "GET",
            f"/jobs/{_id(job_id, 'job_id')}",
            params={"wait": _seconds(wait) if wait else None},
            timeout=self._t.timeout + wait,
        )
        return parse_job(response.json()), retry_after_seconds(response.headers.get("Retry-After")) or 0.0

    def wait(self, job: Any, *, timeout: float | None = 300) -> models.Job:
        """Wait for a job (a Job, an Accepted or an id) to end, by long-polls of at most 30 s,
        and return it (succeeded or failed). Raises WaitTimeout after `timeout` seconds."""
        if isinstance(job, models.Job) and job.ended:
            return job
        job_id = _id(job, "job_id")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - time.monotonic())
            current, pause = self._poll_job(job_id, max(left, 0))
            if current.ended:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout(
                    "wait_timeout", f"Job {job_id} is still {current.status} after {timeout}s.", details={"job": job_id}
                )
            time.sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))

    def list_jobs(
        self, *, status: str | None = None, type: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> models.JobPage:
        page = self._get("/jobs", status=status, type=type, limit=limit, cursor=cursor)
        return models.JobPage.model_validate(page)

    def iter_jobs(self, *, status: str | None = None, type: str | None = None) -> Iterator[models.Job]:
        return self._pages(lambda cursor: self.list_jobs(status=status, type=type, limit=200, cursor=cursor))

    def cancel_job(self, job_id: str) -> models.Job:
        """Cancel a job that has not started (Conflict `job_not_cancellable` otherwise)."""
        return parse_job(self._t.request("DELETE", f"/jobs/{_id(job_id, 'job_id')}").json())

    def redeliver(self, job_id: str) -> models.Delivery:
        """Send a finished job's webhook again."""
        response = self._t.request("POST", f"/jobs/{_id(job_id, 'job_id')}/redeliver")
        return models.Delivery.model_validate(response.json())

    # --- webhooks, probes ------------------------------------------------------------------------

    def webhook_secret(self) -> str:
        """The secret that signs this account's webhooks (see `faceapi_client.verify_webhook`)."""
        return models.WebhookSecret.model_validate(self._get("/webhooks/secret")).secret

    def rotate_webhook_secret(self) -> str:
        response = self._t.request("POST", "/webhooks/secret/rotate", idempotent=False)
        return models.WebhookSecret.model_validate(response.json()).secret

    def health(self) -> models.Health:
        response = self._t.http.get(self.url + "/healthz")
        return models.Health.model_validate(response.json())

    def ready(self) -> models.Health:
        """/readyz: `status` ready or not_ready, with each check (no exception for not_ready)."""
        response = self._t.http.get(self.url + "/readyz")
        return models.Health.model_validate(response.json())

    # --- submissions ---------------------------------------------------------------------------

    def _submit(
        self,
        path: str,
        form: dict[str, str],
        files: list[tuple[str, tuple[str, bytes, str]]],
        idempotency_key: str | None,
        *,
        wait: float | None,
    ) -> models.Accepted | models.Job:
        """POST a photo with an Idempotency-Key; with `wait`, `?wait=N` (200 and the job if it
        ended in time, else 202)."""
        wait = MAX_WAIT if wait is None else min(max(wait, 0), MAX_WAIT)
        response = self._t.request(
            "POST",
            path,
            params={"wait": _seconds(wait) if wait else None},
            data=form,
            files=files,
            idempotency_key=idempotency_key or new_idempotency_key(),
            timeout=self._t.timeout + wait,
        )
        body = response.json()
        if response.status_code == 200 and "status" in body:
            return parse_job(body)
        return models.Accepted.model_validate(body)

    def _submit_and_wait(self, submit: Callable[..., Any], timeout: float | None, raise_on_failure: bool) -> models.Job:
        """What every submit-then-wait method does: `submit(wait=timeout)` (a job that ends within
        30 s comes back in the POST's own answer), then long-poll for what is left of `timeout`;
        JobFailed for a failed job unless `raise_on_failure` is False."""
        started = time.monotonic()
        submitted = submit(wait=timeout)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        job = self.wait(submitted, timeout=left)
        if raise_on_failure:
            job.raise_for_error()
        return job


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"

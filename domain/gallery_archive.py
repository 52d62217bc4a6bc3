"""The gallery archive (docs/EXPORT.md): a ZIP holding a versioned JSON manifest, the embeddings as
one .npy array and each face's aligned crop as a JPEG; never an original photo.

The ZIP's comment carries a sha256 of every byte of the file before the comment, so one byte
changed anywhere (a member, a header, the directory, the comment) is detected; each member's
sha256 is also in the manifest. This detects accidents and tampering in transit, not forgery: whoever
can rewrite the file can recompute the sums (the archive is not signed).

Reading refuses an archive whole, with a reason, before anything is imported: too large, truncated,
altered, unexpected or unsafe member names (`../`, absolute paths, directories, duplicates), a member
larger than it may be, an unknown format version, a manifest that does not match its schema.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from domain.errors import ServiceError
from domain.json_limits import METADATA_MAX_DEPTH, nesting_depth
from domain.models import EMBEDDING_DIM

FORMAT = "faceapi-gallery"
VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
CROP_NAME = re.compile(r"^crops/[0-9a-f]{32}\.jpg$")
CHECKSUM_PREFIX = b"faceapi-gallery sha256="
CHECKSUM_LENGTH = len(CHECKSUM_PREFIX) + 64
# Bounds on each member, so that a small archive cannot expand into a large one (a ZIP bomb).
MAX_CROP_BYTES = 256 * 1024
MAX_MANIFEST_BYTES_PER_FACE = 4096
NPY_HEADER_MAX_BYTES = 4096


def invalid(reason: str, message: str, **details: Any) -> ServiceError:
    return ServiceError("invalid_archive", f"The archive was refused: {message}", reason=reason, **details)


# --- the manifest's schema -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ArchiveFace(_Strict):
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    photo_sha256: Sha256 | None
    model: Annotated[str, Field(min_length=1, max_length=100)]
    embedding: Annotated[int, Field(ge=0)]  # its row in embeddings.npy
    crop: str | None  # crops/<id>.jpg
    det_score: Annotated[float, Field(ge=0, le=1)]
    bbox: Annotated[list[float], Field(min_length=4, max_length=4)]
    quality: dict[str, float] | None
    created_at: datetime | None = None


class Consent(_Strict):
    at: datetime
    by: str | None = None  # the email of the account that recorded it, when known


def _metadata_depth(value: Any) -> Any:
    """The API's limit on a person's metadata holds for an imported person too (domain/json_limits.py)."""
    if nesting_depth(value, METADATA_MAX_DEPTH) > METADATA_MAX_DEPTH:
        raise ValueError(f"metadata may nest objects and lists at most {METADATA_MAX_DEPTH} levels deep")
    return value


class ArchivePerson(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    external_id: Annotated[str, Field(max_length=200)] | None
    metadata: Annotated[dict[str, Any], BeforeValidator(_metadata_depth)]
    consent: Consent
    created_at: datetime | None = None
    faces: list[ArchiveFace]


class ArchiveGallery(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    match_threshold: Annotated[float, Field(ge=0, le=1)] | None
    model: str | None


class Manifest(_Strict):
    format: Literal["faceapi-gallery"]
    version: int
    exported_at: datetime
    gallery: ArchiveGallery
    # Model name -> what is known of it (the sha256 of the recognizer file that made it, when known).
    models: dict[str, dict[str, Any]]
    embeddings: dict[str, Any]
    persons: list[ArchivePerson]
    files: dict[str, Sha256]  # every member but the manifest -> its sha256

    def faces(self) -> list[ArchiveFace]:
        return [face for person in self.persons for face in person.faces]


@dataclass
class GalleryArchive:
    manifest: Manifest
    embeddings: np.ndarray  # float32, faces x EMBEDDING_DIM
    crops: dict[str, bytes] = field(default_factory=dict)  # member name -> JPEG


# --- writing ----------------------------------------------------------------------------------------


def write(manifest: dict[str, Any], embeddings: np.ndarray, crops: dict[str, bytes]) -> bytes:
    """The archive's bytes: manifest (its `files` filled in here), embeddings, crops, checksum."""
    members = {EMBEDDINGS: _npy(embeddings), **crops}
    manifest = {**manifest, "format": FORMAT, "version": VERSION}
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = CHECKSUM_PREFIX + b"0" * 64  # its final value depends on every byte before it
        # JPEGs and float32 barely compress: only the manifest is deflated.
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True), zipfile.ZIP_DEFLATED)
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_STORED)
    return seal(buffer.getvalue())


def seal(zip_bytes: bytes) -> bytes:
    """Write the checksum into a ZIP whose comment is the placeholder (CHECKSUM_PREFIX and 64 bytes)."""
    data = bytearray(zip_bytes)
    data[-64:] = hashlib.sha256(data[:-CHECKSUM_LENGTH]).hexdigest().encode()
    return bytes(data)


def _npy(embeddings: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(embeddings, dtype="<f4").reshape(-1, EMBEDDING_DIM), allow_pickle=False)
    return buffer.getvalue()


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading ----------------------------------------------------------------------------------------


def read(data: bytes, *, max_bytes: int, metadata_max_bytes: int) -> GalleryArchive:
    """The archive's content, or `invalid_archive` naming the first reason it is refused.
    `metadata_max_bytes`: a person's metadata limit (PERSON_METADATA_MAX_BYTES)."""
    if len(data) > max_bytes:
        raise invalid("too_large", f"it is {len(data)} bytes; at most {max_bytes} are accepted.", max_bytes=max_bytes)
    _check_checksum(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            _check_names(infos)
            manifest = _read_manifest(archive, infos)
            _check_metadata_sizes(manifest, metadata_max_bytes)
            members = _read_members(archive, infos, manifest)
    except zipfile.BadZipFile as error:
        raise invalid("not_a_zip", f"it is not a readable ZIP file ({error}).") from None
    embeddings = _embeddings(members.pop(EMBEDDINGS), manifest)
    _check_references(manifest, members, len(embeddings))
    return GalleryArchive(manifest, embeddings, members)


def _check_checksum(data: bytes) -> None:
    if len(data) < CHECKSUM_LENGTH + 22 or data[-CHECKSUM_LENGTH:-64] != CHECKSUM_PREFIX:
        raise invalid(
            "no_checksum",
            "it does not end with its checksum (a faceapi gallery archive ends with it: truncated, or another file).",
        )
    if hashlib.sha256(data[:-CHECKSUM_LENGTH]).hexdigest().encode() != data[-64:]:
        raise invalid("checksum_mismatch", "its checksum does not match its content: it was altered or damaged.")


def _check_names(infos: list[zipfile.ZipInfo]) -> None:
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise invalid("duplicate_member", f"it holds '{name}' twice.", member=name)
        seen.add(name)
        if name not in (MANIFEST, EMBEDDINGS) and not CROP_NAME.match(name):
            # Covers `../x`, `/abs`, `C:\\x`, directories and links: only these exact names are accepted.
            raise invalid("unexpected_member", f"it holds '{name}', which is not part of the format.", member=name)
        if info.flag_bits & 0x1:
            raise invalid("encrypted_member", f"'{name}' is encrypted.", member=name)
    if MANIFEST not in seen or EMBEDDINGS not in seen:
        raise invalid("missing_member", f"it lacks {MANIFEST} or {EMBEDDINGS}.")


def _read_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise invalid(
            "member_too_large", f"'{info.filename}' is {info.file_size} bytes; at most {limit}.", member=info.filename
        )
    try:
        return archive.read(info)  # stops at the declared size and checks the CRC
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise invalid("damaged_member", f"'{info.filename}' cannot be read ({error}).", member=info.filename) from None


def _read_manifest(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> Manifest:
    faces_at_most = len(infos)  # every face has a crop or not; bound the manifest by the members
    limit = 1024 * 1024 + MAX_MANIFEST_BYTES_PER_FACE * faces_at_most * 4
    raw = _read_bounded(archive, archive.getinfo(MANIFEST), limit)
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise invalid("bad_manifest", f"{MANIFEST} is not JSON ({error}).") from None
    except RecursionError:
        raise invalid("bad_manifest", f"{MANIFEST} is nested too deeply to read.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise invalid("not_a_gallery_archive", f"{MANIFEST} does not describe a {FORMAT} archive.")
    if document.get("version") != VERSION:
        raise invalid(
            "unsupported_version",
            f"its format version is {document.get('version')!r}; this service reads version {VERSION}.",
            version=document.get("version"),
            supported=[VERSION],
        )
    try:
        return Manifest.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise invalid("bad_manifest", f"{MANIFEST}: {where}: {first['msg']}.", field=where) from None


def _check_metadata_sizes(manifest: Manifest, limit: int) -> None:
    """The API's limit on a person's metadata holds for an imported person too, measured the same
    way (web/schemas.py): one person over it refuses the whole archive, as any bad part does."""
    for index, person in enumerate(manifest.persons):
        size = len(json.dumps(person.metadata))
        if size > limit:
            where = f"persons.{index}.metadata"
            raise invalid(
                "metadata_too_large",
                f"{MANIFEST}: {where} is {size} bytes as JSON; a person's metadata may be at most {limit} "
                "(PERSON_METADATA_MAX_BYTES).",
                field=where,
                size=size,
                limit=limit,
            )


def _read_members(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], manifest: Manifest) -> dict[str, bytes]:
    faces = len(manifest.faces())
    members: dict[str, bytes] = {}
    for info in infos:
        if info.filename == MANIFEST:
            continue
        limit = NPY_HEADER_MAX_BYTES + faces * EMBEDDING_DIM * 4 if info.filename == EMBEDDINGS else MAX_CROP_BYTES
        data = _read_bounded(archive, info, limit)
        expected = manifest.files.get(info.filename)
        if expected is None or hashlib.sha256(data).hexdigest() != expected:
            raise invalid("member_altered", f"'{info.filename}' does not match its sha256 in the manifest.")
        members[info.filename] = data
    if missing := sorted(set(manifest.files) - set(members)):
        raise invalid("missing_member", f"the manifest lists '{missing[0]}', which is not in the archive.")
    return members


def _embeddings(data: bytes, manifest: Manifest) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise invalid("bad_embeddings", f"{EMBEDDINGS} is not a NumPy array ({error}).") from None
    if array.dtype != np.dtype("<f4") or array.ndim != 2 or array.shape[1] != EMBEDDING_DIM:
        raise invalid("bad_embeddings", f"{EMBEDDINGS} must be float32 of shape (faces, {EMBEDDING_DIM}).")
    if not np.isfinite(array).all():
        raise invalid("bad_embeddings", f"{EMBEDDINGS} holds values that are not finite numbers.")
    return array


def _check_references(manifest: Manifest, crops: dict[str, bytes], rows: int) -> None:
    external_ids = [person.external_id for person in manifest.persons if person.external_id]
    if len(external_ids) != len(set(external_ids)):
        duplicate = next(e for e in external_ids if external_ids.count(e) > 1)
        raise invalid("bad_manifest", f"the external_id '{duplicate}' is given to two persons.")
    ids: set[str] = set()
    for face in manifest.faces():
        if face.id in ids:
            raise invalid("bad_manifest", f"face {face.id} appears twice.")
        ids.add(face.id)
        if face.embedding >= rows:
            raise invalid("bad_manifest", f"face {face.id} names embedding row {face.embedding}; there are {rows}.")
        if face.crop is not None and face.crop not in crops:
            raise invalid("bad_manifest", f"face {face.id} names the crop '{face.crop}', which is not in the archive.")

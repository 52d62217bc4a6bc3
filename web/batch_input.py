"""Reading a batch enrollment request: many `images` parts plus a JSON `manifest`, or one ZIP
`archive` laid out as `<person name>/<photo>` (under one common top folder or none). Every entry
keeps its own error, so one bad photo fails only its own item; what cannot be matched to a row
without guessing (two photos or two rows with one file name, a photo no row names) refuses the
whole request. Names and external_ids follow the single-photo rules (web/schemas.Text).

A ZIP archive is read from the upload's own spooled file (never copied into memory whole), and
checked before anything is decompressed: the entry count and directory size from its
end-of-central-directory record (before zipfile parses the directory), no two members sharing
bytes (overlapping-member zip bombs), and a total of declared sizes within MAX_BATCH_BYTES (what a
member decompresses to is capped at its declared size). Each member then: no path traversal, no
nested folders, a bounded size and compression ratio; an encrypted member, an unsupported
compression method, corrupt data or a bad CRC fails only its own item."""

from __future__ import annotations

import json
import posixpath
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

from pydantic_core import PydanticCustomError
from werkzeug.datastructures import FileStorage

from domain.enrollment import photo_sha256
from domain.errors import ServiceError, file_too_large
from domain.images import ImageInfo, validate_image
from web.errors import too_large
from web.forms import bad_request
from web.schemas import BatchForm, clean_text, parse_target_face
from web.settings import app_settings

MAX_ITEMS = 500
MAX_COMPRESSION_RATIO = 100
# Entries an archive may list: its photos, plus folders and what archivers add (__MACOSX/._*).
MAX_ARCHIVE_ENTRIES = 4 * MAX_ITEMS
# Bytes its central directory may take: a record is 46 bytes plus its name and extra fields.
MAX_DIRECTORY_BYTES = MAX_ARCHIVE_ENTRIES * 1024
# Stored and deflated: every archiver's default. Others (bzip2, LZMA, AES...) fail their item.
COMPRESSION_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# What extracting a broken member raises: corrupt deflate data, a bad CRC or local header, data
# ending early.
EXTRACTION_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError)
MANIFEST_KEYS = {"file", "name", "external_id", "target_face"}
JUNK_FILES = {"Thumbs.db", "desktop.ini", "Icon\r"}


@dataclass
class Entry:
    file: str
    name: str | None
    external_id: str | None = None
    data: bytes | None = None
    error: ServiceError | None = None
    sha256: str | None = None
    info: ImageInfo | None = None  # what validation read (format, size): the job's cost comes from it
    target_face: list[float] | None = None  # x, y, w, h: the face of the photo to enroll (else its largest)


def _checked(entry: Entry, declared_type: str | None = None) -> Entry:
    if entry.error is None and entry.data is not None:
        try:
            entry.info = validate_image(entry.data, declared_type, settings=app_settings())
            entry.sha256 = photo_sha256(entry.data)
        except ServiceError as error:
            entry.error, entry.data = error, None
    return entry


def _entry_text(value: str, field: str) -> tuple[str | None, ServiceError | None]:
    """A name or external_id by the single-photo rules: (the value, None) or (None, the item's error)."""
    try:
        return clean_text(value), None
    except PydanticCustomError as problem:
        return None, ServiceError(problem.type, f"{field}: {problem.message()}")


def _entry_target_face(value: object) -> tuple[list[float] | None, ServiceError | None]:
    """A row's target_face (`"x,y,w,h"` or `[x, y, w, h]`): (the box, None) or (None, the item's error)."""
    if value is None or value == "":
        return None, None
    try:
        return parse_target_face(value), None
    except PydanticCustomError as problem:
        return None, ServiceError(problem.type, problem.message())


def _manifest_rows(text: str) -> list[dict]:
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested beyond what the decoder recurses
        raise bad_request("invalid_manifest", "manifest must be a JSON list of {file, name, external_id?}.") from None
    if not isinstance(manifest, list) or not manifest or len(manifest) > MAX_ITEMS:
        raise bad_request("invalid_manifest", f"manifest must list between 1 and {MAX_ITEMS} entries.")
    for index, row in enumerate(manifest):
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not isinstance(row.get("name"), str):
            raise bad_request("invalid_manifest", f"Manifest entry {index} needs string 'file' and 'name'.")
        unknown = sorted(set(row) - MANIFEST_KEYS)
        if unknown:
            raise bad_request("invalid_manifest", f"Manifest entry {index} has unknown key(s): {', '.join(unknown)}.")
        if row.get("external_id") is not None and not isinstance(row["external_id"], str):
            raise bad_request("invalid_manifest", f"Manifest entry {index}: external_id must be a string.")
    return manifest


def _uploads_by_name(rows: list[dict], images: list[FileStorage]) -> dict[str, FileStorage]:
    """The `images` parts by file name: a row reads only its own part, so names must be unique on
    both sides (curl sends only the base name: photos from two folders collide) and every part
    must be named by a row."""
    uploads: dict[str, FileStorage] = {}
    for storage in images:
        name = storage.filename or ""
        if name in uploads:
            raise bad_request(
                "duplicate_file",
                f"Two uploaded images are named '{name}': give every photo a unique file name "
                "(e.g. its folder and name, 'amy/1.jpg', with curl's ';filename=').",
                file=name,
            )
        uploads[name] = storage
    named = [row["file"] for row in rows]
    for file in named:
        if named.count(file) > 1:
            raise bad_request("duplicate_file", f"Two manifest entries name the file '{file}'.", file=file)
    if unreferenced := sorted(set(uploads) - set(named)):
        raise bad_request(
            "unreferenced_file",
            f"No manifest entry names the uploaded image(s): {', '.join(unreferenced[:10])}.",
            files=unreferenced[:50],
        )
    return uploads


def _manifest_entries(form: BatchForm) -> list[Entry]:
    rows = _manifest_rows(form.manifest or "")
    uploads = _uploads_by_name(rows, form.images)
    limit = app_settings().max_upload_bytes
    entries = []
    for row in rows:
        entry = Entry(file=row["file"], name=None)
        entry.name, name_error = _entry_text(row["name"], "name")
        external_id_error = None
        if (row.get("external_id") or "").strip():
            entry.external_id, external_id_error = _entry_text(row["external_id"], "external_id")
        entry.target_face, target_face_error = _entry_target_face(row.get("target_face"))
        storage = uploads.get(row["file"])
        if storage is None:
            entry.error = ServiceError("missing_file", "No uploaded image has this file name.")
        elif name_error or external_id_error or target_face_error:
            entry.error = name_error or external_id_error or target_face_error
        else:
            entry.data = storage.stream.read(limit + 1)
            if len(entry.data) > limit:
                entry.data, entry.error = None, file_too_large(limit)
        entries.append(_checked(entry))
    return entries


def _skipped(path: str) -> bool:
    """Files an archiver adds beside the photos: macOS resource forks, Finder and Windows thumbnails."""
    parts = path.split("/")
    hidden = any(part.startswith(".") and part not in (".", "..") for part in parts)
    return parts[0] == "__MACOSX" or hidden or parts[-1] in JUNK_FILES


def _common_top_folder(paths: list[str]) -> str | None:
    """`staff/` when every member lies under it (zipping the parent folder, the usual way)."""
    tops = {path.split("/", 1)[0] for path in paths}
    if len(tops) == 1 and all(path.count("/") >= 2 for path in paths):
        return tops.pop()
    return None


def invalid_archive(message: str = "The archive is not a valid ZIP file.") -> ServiceError:
    return bad_request("invalid_archive", message)


def _directory_size(stream: IO[bytes]) -> tuple[int, int]:
    """(entries, bytes) of the archive's central directory, from its end-of-central-directory
    record (or the ZIP64 one it points to): read before zipfile parses the directory, which it
    does whole, however large (300,000 entries: 1.5 s and 180 MB)."""
    stream.seek(0, 2)
    size = stream.tell()
    tail_size = min(size, 22 + 0xFFFF)  # the record, and a comment of at most 64 KiB
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or tail_size - at < 22:
        raise invalid_archive()
    entries, directory_bytes, directory_offset = struct.unpack_from("<HLL", tail, at + 10)
    if entries == 0xFFFF or 0xFFFFFFFF in (directory_bytes, directory_offset):
        locator = tail[at - 20 : at] if at >= 20 else b""  # ZIP64: its locator precedes the record
        if locator[:4] != b"PK\x06\x07":
            raise invalid_archive()
        (record_offset,) = struct.unpack_from("<Q", locator, 8)
        stream.seek(record_offset)
        record = stream.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            raise invalid_archive()
        entries, directory_bytes = struct.unpack_from("<QQ", record, 32)
    return entries, directory_bytes


def _refuse_overlaps(stream: IO[bytes], infos: list[zipfile.ZipInfo]) -> None:
    """Two directory entries whose bytes overlap (or one local header listed twice) decompress the
    same data many times over: a zip bomb whose every member looks small. No archiver writes one."""
    spans = []
    for info in infos:
        stream.seek(info.header_offset)
        header = stream.read(30)
        if len(header) == 30 and header[:4] == b"PK\x03\x04":
            name_length, extra_length = struct.unpack_from("<HH", header, 26)
        else:  # a broken local header: its member fails on its own when read
            name_length, extra_length = len(info.orig_filename.encode()), len(info.extra)
        spans.append((info.header_offset, info.header_offset + 30 + name_length + extra_length + info.compress_size))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise invalid_archive("Members of the archive overlap one another (a zip bomb): it is refused.")


def _open_archive(stream: IO[bytes]) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    entries, directory_bytes = _directory_size(stream)
    if entries > MAX_ARCHIVE_ENTRIES or directory_bytes > MAX_DIRECTORY_BYTES:
        raise invalid_archive(
            f"The archive lists {entries} entries in {directory_bytes} bytes; at most {MAX_ARCHIVE_ENTRIES} "
            f"entries ({MAX_ITEMS} photos) are accepted."
        )
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise invalid_archive() from None
    infos = archive.infolist()
    if len(infos) != entries:
        raise invalid_archive(f"The archive's directory holds {len(infos)} entries, its end record says {entries}.")
    _refuse_overlaps(stream, infos)
    return archive, infos


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> tuple[bytes | None, ServiceError | None]:
    """A member's bytes (at most `limit` + 1 of them), or the error of its item."""
    if info.flag_bits & 0x1:
        return None, ServiceError("encrypted_member", "The member is encrypted: send it unencrypted.")
    if info.compress_type not in COMPRESSION_METHODS:
        return None, ServiceError(
            "unsupported_compression",
            f"The member's compression method ({info.compress_type}) is not supported: store or deflate it.",
        )
    try:
        with archive.open(info) as member:  # read at most the limit, whatever the header claims
            return member.read(limit + 1), None
    except EXTRACTION_ERRORS:
        return None, ServiceError(
            "corrupt_member", "The member could not be extracted: its data or checksum (CRC) is corrupt."
        )


def _archive_entries(upload: FileStorage) -> list[Entry]:
    settings = app_settings()
    limit = settings.max_upload_bytes
    # The upload's own stream (spooled to a temporary file when large): no second copy in memory.
    archive, infos = _open_archive(upload.stream)
    members = [info for info in infos if not info.is_dir() and not _skipped(info.filename)]
    if not members or len(members) > MAX_ITEMS:
        raise bad_request("invalid_archive", f"The archive must hold between 1 and {MAX_ITEMS} photos.")
    # A member decompresses to at most its declared size: their sum bounds what the batch unpacks.
    if sum(info.file_size for info in members if info.file_size <= limit) > settings.max_batch_bytes:
        raise too_large()
    top = _common_top_folder([info.filename for info in members])
    entries = []
    for info in members:
        path = info.filename[len(top) + 1 :] if top else info.filename
        entry = Entry(file=path, name=None)
        parts = path.split("/")
        if info.filename.startswith("/") or ".." in parts or posixpath.normpath(path) != path:
            entry.error = ServiceError("invalid_path", "The member's path leaves the archive.")
        elif len(parts) != 2:
            entry.error = ServiceError(
                "invalid_path", "Archive members must be <person name>/<photo> (one folder per person)."
            )
        elif info.file_size > settings.max_upload_bytes:
            entry.error = file_too_large(settings.max_upload_bytes)
        elif info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            entry.error = ServiceError("suspicious_compression", "The member is compressed suspiciously well.")
        else:
            entry.name, entry.error = _entry_text(parts[0], "name (the folder)")
            if entry.error is None:
                entry.data, entry.error = _extract(archive, info, limit)
            if entry.data is not None and len(entry.data) > limit:
                entry.data, entry.error = None, file_too_large(limit)
        entries.append(_checked(entry))
    return entries


def read_entries(form: BatchForm) -> list[Entry]:
    if form.archive is not None:
        return _archive_entries(form.archive)
    if form.manifest is not None:
        return _manifest_entries(form)
    raise bad_request("missing_field", "Send `images` with a `manifest`, or one ZIP `archive`.")

"""Reading a batch enrollment request: many `images` parts plus a JSON `manifest`, or one ZIP
`archive` laid out as `<person name>/<photo>` (under one common top folder or none). Every entry
keeps its own error, so one bad photo fails only its own item; what cannot be matched to a row
without guessing (two photos or two rows with one file name, a photo no row names) refuses the
whole request. ZIP members are checked before they are read: no path traversal, no
nested folders, bounded sizes and compression ratios (zip bombs), a bounded member count."""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass

from werkzeug.datastructures import FileStorage

from config import get_settings
from domain.enrollment import photo_sha256
from domain.errors import ServiceError, file_too_large
from domain.images import validate_image
from web.forms import bad_request
from web.schemas import BatchForm

MAX_ITEMS = 500
MAX_COMPRESSION_RATIO = 100
MANIFEST_KEYS = {"file", "name", "external_id"}
JUNK_FILES = {"Thumbs.db", "desktop.ini", "Icon\r"}


@dataclass
class Entry:
    file: str
    name: str | None
    external_id: str | None = None
    data: bytes | None = None
    error: ServiceError | None = None
    sha256: str | None = None


def _checked(entry: Entry, declared_type: str | None = None) -> Entry:
    if entry.error is None and entry.data is not None:
        try:
            validate_image(entry.data, declared_type)
            entry.sha256 = photo_sha256(entry.data)
        except ServiceError as error:
            entry.error, entry.data = error, None
    return entry


def _manifest_rows(text: str) -> list[dict]:
    try:
        manifest = json.loads(text)
    except ValueError:
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
    limit = get_settings().max_upload_bytes
    entries = []
    for row in rows:
        external_id = (row.get("external_id") or "").strip()[:200] or None
        entry = Entry(file=row["file"], name=row["name"].strip()[:200] or None, external_id=external_id)
        storage = uploads.get(row["file"])
        if storage is None:
            entry.error = ServiceError("missing_file", "No uploaded image has this file name.")
        elif not entry.name:
            entry.error = ServiceError("missing_field", "The entry has no name.")
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


def _archive_entries(upload: FileStorage) -> list[Entry]:
    settings = get_settings()
    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.stream.read()))
    except zipfile.BadZipFile:
        raise bad_request("invalid_archive", "The archive is not a valid ZIP file.") from None
    members = [info for info in archive.infolist() if not info.is_dir() and not _skipped(info.filename)]
    if not members or len(members) > MAX_ITEMS:
        raise bad_request("invalid_archive", f"The archive must hold between 1 and {MAX_ITEMS} photos.")
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
            entry.name = parts[0].strip()[:200] or None
            with archive.open(info) as member:  # read at most the limit, whatever the header claims
                entry.data = member.read(settings.max_upload_bytes + 1)
            if len(entry.data) > settings.max_upload_bytes:
                entry.data, entry.error = None, file_too_large(settings.max_upload_bytes)
        entries.append(_checked(entry))
    return entries


def read_entries(form: BatchForm) -> list[Entry]:
    if form.archive is not None:
        return _archive_entries(form.archive)
    if form.manifest is not None:
        return _manifest_entries(form)
    raise bad_request("missing_field", "Send `images` with a `manifest`, or one ZIP `archive`.")

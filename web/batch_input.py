"""Reading a batch enrollment request: many `images` parts plus a JSON `manifest`, or one ZIP
`archive` laid out as `<person name>/<photo>`. Every entry keeps its own error, so one bad photo
fails only its own item. ZIP members are checked before they are read: no path traversal, no
nested folders, bounded sizes and compression ratios (zip bombs), a bounded member count."""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from dataclasses import dataclass

from flask import request

from config import get_settings
from domain.errors import ServiceError
from domain.images import validate_image
from web.forms import bad_request

MAX_ITEMS = 500
MAX_COMPRESSION_RATIO = 100


@dataclass
class Entry:
    file: str
    name: str | None
    external_id: str | None = None
    data: bytes | None = None
    error: ServiceError | None = None


def _checked(entry: Entry, declared_type: str | None = None) -> Entry:
    if entry.error is None and entry.data is not None:
        try:
            validate_image(entry.data, declared_type)
        except ServiceError as error:
            entry.error, entry.data = error, None
    return entry


def _manifest_entries() -> list[Entry]:
    try:
        manifest = json.loads(request.form["manifest"])
    except (ValueError, KeyError):
        raise bad_request("invalid_manifest", "manifest must be a JSON list of {file, name, external_id?}.") from None
    if not isinstance(manifest, list) or not manifest or len(manifest) > MAX_ITEMS:
        raise bad_request("invalid_manifest", f"manifest must list between 1 and {MAX_ITEMS} entries.")
    files = {storage.filename: storage for storage in request.files.getlist("images")}
    limit = get_settings().max_upload_bytes
    entries = []
    for row in manifest:
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not isinstance(row.get("name"), str):
            raise bad_request("invalid_manifest", "Each manifest entry needs string 'file' and 'name'.")
        external_id = row.get("external_id")
        entry = Entry(file=row["file"], name=row["name"].strip()[:200] or None, external_id=external_id)
        storage = files.get(row["file"])
        if storage is None:
            entry.error = ServiceError("missing_file", "No uploaded image has this file name.")
        elif not entry.name:
            entry.error = ServiceError("missing_field", "The entry has no name.")
        else:
            entry.data = storage.stream.read(limit + 1)
            if len(entry.data) > limit:
                entry.data, entry.error = None, ServiceError("file_too_large", "The image is over the size limit.")
        entries.append(_checked(entry, storage.mimetype if storage else None))
    return entries


def _archive_entries() -> list[Entry]:
    settings = get_settings()
    try:
        archive = zipfile.ZipFile(io.BytesIO(request.files["archive"].stream.read()))
    except zipfile.BadZipFile:
        raise bad_request("invalid_archive", "The archive is not a valid ZIP file.") from None
    members = [info for info in archive.infolist() if not info.is_dir()]
    if not members or len(members) > MAX_ITEMS:
        raise bad_request("invalid_archive", f"The archive must hold between 1 and {MAX_ITEMS} files.")
    entries = []
    for info in members:
        entry = Entry(file=info.filename, name=None)
        parts = info.filename.split("/")
        normalized = posixpath.normpath(info.filename)
        if info.filename.startswith("/") or ".." in parts or normalized != info.filename or len(parts) != 2:
            entry.error = ServiceError("invalid_path", "Archive members must be <person name>/<photo>.")
        elif info.file_size > settings.max_upload_bytes:
            entry.error = ServiceError("file_too_large", "The member is over the image size limit.")
        elif info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            entry.error = ServiceError("suspicious_compression", "The member is compressed suspiciously well.")
        else:
            entry.name = parts[0].strip()[:200] or None
            with archive.open(info) as member:  # read at most the limit, whatever the header claims
                entry.data = member.read(settings.max_upload_bytes + 1)
            if len(entry.data) > settings.max_upload_bytes:
                entry.data, entry.error = None, ServiceError("file_too_large", "The member is over the size limit.")
        entries.append(_checked(entry))
    return entries


def read_entries() -> list[Entry]:
    if "archive" in request.files:
        return _archive_entries()
    if "manifest" in request.form:
        return _manifest_entries()
    raise bad_request("missing_field", "Send `images` with a `manifest`, or one ZIP `archive`.")

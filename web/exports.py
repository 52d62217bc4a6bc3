"""Gallery exports: the archive an export job wrote, for its organisation, until it expires."""

from __future__ import annotations

import re

from flask import Response

from domain.models import Role
from web.auth import current_caller, roles_required
from web.db import get_session
from web.schemas import ExportPath
from web.services import portability
from web.validation import AUTH, errors, resource, validated

bp = resource("exports", __name__, "/api/v1/exports", "Gallery archives written by export jobs")


@bp.get("/<uuid:export_id>", responses={200: None, **errors(400, 404, 410, *AUTH)})
@roles_required(Role.admin, Role.operator)
@validated
def download(path: ExportPath):
    """Download an export's archive (application/zip); 410 `export_expired` once its time is over"""
    export, gallery_name = portability.load_export(get_session(), current_caller(), path.export_id)
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", gallery_name)
    filename = f"{safe_name}-{export.created_at:%Y%m%d-%H%M%S}.faceapi-gallery.zip"
    response = Response(export.archive, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Content-SHA256"] = export.sha256
    return response

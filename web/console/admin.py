"""Admins' pages: API keys (a new key is shown once), accounts and their roles, the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, redirect, render_template, request, url_for
from pydantic import ValidationError

from domain import api_keys
from domain.errors import ServiceError
from domain.models import Role
from web import services
from web.console import bp, current, require_role
from web.db import get_session
from web.schemas import ApiKeyCreate, NewAccount, RoleChange
from web.services import browse
from web.validation import describe

LIST_SIZE = 50


def _validated(model: type, values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as problem:
        raise ServiceError(**describe(problem)) from None


@bp.route("/api-keys", methods=["GET", "POST"])
@require_role(Role.admin)
def api_key_page() -> str:
    session, caller = get_session(), current().caller
    created = None
    if request.method == "POST":
        galleries = [name.strip() for name in request.form.get("galleries", "").split(",") if name.strip()]
        body = _validated(
            ApiKeyCreate,
            {
                "name": request.form.get("name", ""),
                "role": request.form.get("role") or Role.operator.value,
                "galleries": galleries or None,
                "expires_at": request.form.get("expires_at") or None,
            },
        )
        key, secret = services.create_api_key(
            session, caller, name=body.name, role=body.role, galleries=body.galleries, expires_at=body.expires_at
        )
        created = {**api_keys.document(key), "key": secret}
    keys = api_keys.list_keys(session, caller)
    return render_template("api_keys.html", keys=keys, created=created, roles=[r.value for r in Role])


@bp.post("/api-keys/<uuid:key_id>/revoke")
@require_role(Role.admin)
def revoke_api_key(key_id: uuid.UUID) -> Response:
    services.revoke_api_key(get_session(), current().caller, key_id)
    return redirect(url_for("console.api_key_page"))


@bp.get("/accounts")
@require_role(Role.admin)
def accounts_page() -> str:
    page = browse.list_accounts(
        get_session(), current().caller, limit=LIST_SIZE, cursor=request.args.get("cursor") or None
    )
    return render_template("accounts.html", page=page, roles=[r.value for r in Role])


@bp.post("/accounts")
@require_role(Role.admin)
def create_account() -> Response:
    body = _validated(NewAccount, {key: request.form.get(key, "") for key in ("email", "password", "role")})
    services.create_account(get_session(), current().caller, body.email, body.password, body.role)
    return redirect(url_for("console.accounts_page"))


@bp.post("/accounts/<uuid:account_id>/role")
@require_role(Role.admin)
def change_role(account_id: uuid.UUID) -> Response:
    body = _validated(RoleChange, {"role": request.form.get("role", "")})
    services.change_role(get_session(), current().caller, account_id, body.role)
    return redirect(url_for("console.accounts_page"))


@bp.post("/accounts/<uuid:account_id>/delete")
@require_role(Role.admin)
def delete_account(account_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    account = services.load_account(session, caller, account_id)
    services.delete_account(session, caller, account, email=account.email)
    return redirect(url_for("console.accounts_page"))


@bp.get("/audit")
@require_role(Role.admin)
def audit_page() -> str:
    action = (request.args.get("action") or "").strip()[:50] or None
    page = browse.audit_page(
        get_session(), current().caller, action=action, limit=LIST_SIZE, cursor=request.args.get("cursor") or None
    )
    return render_template("audit.html", page=page, action=action or "")

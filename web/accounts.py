"""Account management for admins, and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from domain import accounts, audit
from domain.errors import NotFound
from domain.jobs import iso
from domain.models import Account, AuditEvent, Role
from web.auth import account_document, current_account, roles_required
from web.db import get_session
from web.forms import bad_request, json_body, page_limit
from web.pagination import keyset_page

bp = Blueprint("accounts", __name__, url_prefix="/api/v1")


def _account(account_id: uuid.UUID) -> Account:
    account = get_session().get(Account, account_id)
    if account is None:
        raise NotFound("account_not_found", "No such account.")
    return account


@bp.get("/accounts")
@roles_required(Role.admin)
def list_accounts():
    page, next_cursor = keyset_page(
        get_session(),
        select(Account),
        (Account.created_at, Account.id),
        limit=page_limit(),
        cursor=request.args.get("cursor"),
    )
    return jsonify({"items": [account_document(a) for (a,) in page], "next_cursor": next_cursor})


@bp.patch("/accounts/<uuid:account_id>")
@roles_required(Role.admin)
def change_role(account_id: uuid.UUID):
    body = json_body(required=("role",))
    try:
        role = Role(body["role"])
    except ValueError:
        raise bad_request("invalid_field", "role must be one of admin, operator, user.") from None
    session = get_session()
    account = _account(account_id)
    audit.record(
        session, current_account(), "account.role_change", "account", account.id, old=account.role.value, new=role.value
    )
    account.role = role
    session.commit()
    return jsonify(account_document(account))


@bp.delete("/accounts/<uuid:account_id>")
@roles_required(Role.admin)
def delete_account(account_id: uuid.UUID):
    session = get_session()
    account = _account(account_id)
    audit.record(session, current_account(), "account.delete", "account", account.id, email=account.email)
    accounts.delete_account(session, account)
    session.commit()
    return "", 204


def _time_arg(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise bad_request("invalid_field", f"{name} must be an ISO 8601 date-time.") from None


@bp.get("/audit")
@roles_required(Role.admin)
def audit_log():
    """Newest first; filters: actor_id, action, target_id, since, until; cursor pagination."""
    query = select(AuditEvent)
    if actor := request.args.get("actor_id"):
        try:
            query = query.where(AuditEvent.actor_id == uuid.UUID(actor))
        except ValueError:
            raise bad_request("invalid_field", "actor_id must be a UUID.") from None
    if action := request.args.get("action"):
        query = query.where(AuditEvent.action == action)
    if target := request.args.get("target_id"):
        query = query.where(AuditEvent.target_id == target)
    if since := _time_arg("since"):
        query = query.where(AuditEvent.at >= since)
    if until := _time_arg("until"):
        query = query.where(AuditEvent.at < until)
    page, next_cursor = keyset_page(
        get_session(),
        query,
        (AuditEvent.at, AuditEvent.id),
        limit=page_limit(),
        cursor=request.args.get("cursor"),
        descending=True,
    )
    items = [
        {
            "id": str(e.id),
            "at": iso(e.at),
            "actor_id": str(e.actor_id) if e.actor_id else None,
            "actor_email": e.actor_email,
            "action": e.action,
            "target_type": e.target_type,
            "target_id": e.target_id,
            "details": e.details,
        }
        for (e,) in page
    ]
    return jsonify({"items": items, "next_cursor": next_cursor})

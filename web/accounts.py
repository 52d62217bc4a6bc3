"""Account management for admins, and the audit log."""

from __future__ import annotations

import uuid

from flask import jsonify
from sqlalchemy import select

from domain import accounts, audit
from domain.errors import NotFound
from domain.jobs import iso
from domain.models import Account, AuditEvent, Role
from web.auth import account_document, current_account, roles_required
from web.db import get_session
from web.pagination import keyset_page
from web.schemas import Account as AccountOut
from web.schemas import AccountPage, AccountPath, AuditPage, AuditQuery, PageQuery, RoleChange
from web.validation import AUTH, errors, resource, validated

bp = resource("accounts", __name__, "/api/v1", "Admins: accounts, roles and the audit log")


def _account(account_id: uuid.UUID) -> Account:
    account = get_session().get(Account, account_id)
    if account is None:
        raise NotFound("account_not_found", "No such account.")
    return account


@bp.get("/accounts", responses={200: AccountPage, **errors(400, *AUTH)})
@roles_required(Role.admin)
@validated
def list_accounts(query: PageQuery):
    """Every account, in creation order"""
    page, next_cursor = keyset_page(
        get_session(), select(Account), (Account.created_at, Account.id), limit=query.limit, cursor=query.cursor
    )
    return jsonify({"items": [account_document(a) for (a,) in page], "next_cursor": next_cursor})


@bp.patch("/accounts/<uuid:account_id>", responses={200: AccountOut, **errors(400, 404, *AUTH)})
@roles_required(Role.admin)
@validated
def change_role(path: AccountPath, body: RoleChange):
    """Change an account's role"""
    session = get_session()
    account = _account(path.account_id)
    audit.record(
        session,
        current_account(),
        "account.role_change",
        "account",
        account.id,
        old=account.role.value,
        new=body.role.value,
    )
    account.role = body.role
    session.commit()
    return jsonify(account_document(account))


@bp.delete("/accounts/<uuid:account_id>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required(Role.admin)
@validated
def delete_account(path: AccountPath):
    """Delete an account with everything it owns"""
    session = get_session()
    account = _account(path.account_id)
    audit.record(session, current_account(), "account.delete", "account", account.id, email=account.email)
    accounts.delete_account(session, account)
    session.commit()
    return "", 204


@bp.get("/audit", responses={200: AuditPage, **errors(400, *AUTH)})
@roles_required(Role.admin)
@validated
def audit_log(query: AuditQuery):
    """The audit log, newest first; filters: actor_id, action, target_id, since, until"""
    statement = select(AuditEvent)
    if query.actor_id:
        statement = statement.where(AuditEvent.actor_id == query.actor_id)
    if query.action:
        statement = statement.where(AuditEvent.action == query.action)
    if query.target_id:
        statement = statement.where(AuditEvent.target_id == query.target_id)
    if query.since:
        statement = statement.where(AuditEvent.at >= query.since)
    if query.until:
        statement = statement.where(AuditEvent.at < query.until)
    page, next_cursor = keyset_page(
        get_session(),
        statement,
        (AuditEvent.at, AuditEvent.id),
        limit=query.limit,
        cursor=query.cursor,
        descending=True,
    )
    return jsonify({"items": [_event_document(e) for (e,) in page], "next_cursor": next_cursor})


def _event_document(event: AuditEvent) -> dict:
    return {
        "id": str(event.id),
        "at": iso(event.at),
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "actor_email": event.actor_email,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": event.details,
    }

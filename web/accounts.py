"""Admins of an organisation: its accounts, its API keys and its audit log."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from domain import api_keys
from domain.jobs import iso
from domain.models import Account, AuditEvent, Role
from web import services
from web.auth import account_document, current_caller, roles_required
from web.db import get_session
from web.pagination import keyset_page
from web.schemas import Account as AccountOut
from web.schemas import (
    AccountPage,
    AccountPath,
    ApiKeyCreate,
    ApiKeyList,
    ApiKeyPath,
    AuditPage,
    AuditQuery,
    NewAccount,
    NewApiKey,
    PageQuery,
    RoleChange,
)
from web.validation import AUTH, errors, resource, validated

bp = resource("accounts", __name__, "/api/v1", "Admins: the organisation's accounts, API keys and audit log")


@bp.post("/accounts", responses={201: AccountOut, **errors(400, 409, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def create_account(body: NewAccount):
    """Create an account in the organisation, with an initial password to hand over"""
    account = services.create_account(get_session(), current_caller(), body.email, body.password, body.role)
    return jsonify(account_document(account)), 201


@bp.get("/accounts", responses={200: AccountPage, **errors(400, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def list_accounts(query: PageQuery):
    """The organisation's accounts, in creation order"""
    statement = select(Account).where(Account.organisation_id == current_caller().organisation_id)
    page, next_cursor = keyset_page(
        get_session(), statement, (Account.created_at, Account.id), limit=query.limit, cursor=query.cursor
    )
    return jsonify({"items": [account_document(a) for (a,) in page], "next_cursor": next_cursor})


@bp.post("/api-keys", responses={201: NewApiKey, **errors(400, 409, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def create_api_key(body: ApiKeyCreate):
    """A service account for code: the key is shown once, in this answer only"""
    key, secret = services.create_api_key(
        get_session(),
        current_caller(),
        name=body.name,
        role=body.role,
        galleries=body.galleries,
        expires_at=body.expires_at,
    )
    return jsonify({**api_keys.document(key), "key": secret}), 201


@bp.get("/api-keys", responses={200: ApiKeyList, **errors(*AUTH)})
@roles_required(Role.admin, signed_in=True)
def list_api_keys():
    """The organisation's API keys (never their secrets), with when each was last used"""
    return jsonify({"items": api_keys.list_keys(get_session(), current_caller())})


@bp.delete("/api-keys/<uuid:key_id>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def revoke_api_key(path: ApiKeyPath):
    """Revoke a key: the next request with it answers 401"""
    services.revoke_api_key(get_session(), current_caller(), path.key_id)
    return "", 204


@bp.patch("/accounts/<uuid:account_id>", responses={200: AccountOut, **errors(400, 404, 409, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def change_role(path: AccountPath, body: RoleChange):
    """Change an account's role"""
    account = services.change_role(get_session(), current_caller(), path.account_id, body.role)
    return jsonify(account_document(account))


@bp.delete("/accounts/<uuid:account_id>", responses={204: None, **errors(400, 404, 409, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def delete_account(path: AccountPath):
    """Delete an account with everything it owns"""
    session, caller = get_session(), current_caller()
    account = services.load_account(session, caller, path.account_id)
    services.delete_account(session, caller, account, email=account.email)
    return "", 204


@bp.get("/audit", responses={200: AuditPage, **errors(400, *AUTH)})
@roles_required(Role.admin, signed_in=True)
@validated
def audit_log(query: AuditQuery):
    """The organisation's audit log, newest first; filters: actor_id, action, target_id, since, until"""
    statement = select(AuditEvent).where(AuditEvent.organisation_id == current_caller().organisation_id)
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
        "api_key_id": str(event.api_key_id) if event.api_key_id else None,
        "details": event.details,
    }

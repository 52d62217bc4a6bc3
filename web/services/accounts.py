"""Accounts, API keys and the webhook secret: an admin's changes (and an account's own), audited
and committed."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import accounts, api_keys, audit, webhooks
from domain.callers import Caller
from domain.models import Account, ApiKey, Role
from web.services.access import one_or_404, require_whole_organisation
from web.settings import app_settings


def load_account(session: Session, caller: Caller, account_id: uuid.UUID) -> Account:
    """An account of the caller's organisation (another organisation's answers 404 too)."""
    query = select(Account).where(Account.id == account_id, Account.organisation_id == caller.organisation_id)
    return one_or_404(session, query, "account_not_found", "No such account.")


def create_account(session: Session, caller: Caller, email: str, password: str, role: Role) -> Account:
    account = accounts.create_account(session, email, password, role, caller.organisation_id, settings=app_settings())
    audit.record(session, caller, "account.create", "account", account.id, email=account.email, role=role.value)
    session.commit()
    return account


def sign_up(session: Session, email: str, password: str) -> Account:
    """The admin of a new organisation of its own, created by the person who will use it: it can
    enroll and recognize at once, and add colleagues (POST /api/v1/accounts) with the roles they need."""
    account = accounts.create_account(session, email, password, Role.admin, settings=app_settings())
    audit.record(session, account, "account.signup", "account", account.id)
    session.commit()
    return account


def change_role(session: Session, caller: Caller, account_id: uuid.UUID, role: Role) -> Account:
    account = load_account(session, caller, account_id)
    accounts.ensure_an_admin_remains(session, account, role)
    audit.record(session, caller, "account.role_change", "account", account.id, old=account.role.value, new=role.value)
    account.role = role
    session.commit()
    return account


def change_password(session: Session, account: Account, current_password: str, new_password: str) -> None:
    accounts.change_password(session, account, current_password, new_password, settings=app_settings())
    audit.record(session, account, "account.password_change", "account", account.id)
    session.commit()


def delete_account(session: Session, actor: Caller | Account, account: Account, **audit_details: str) -> None:
    """Delete an account with everything it owns, unless it is its organisation's last admin (409)."""
    accounts.ensure_an_admin_remains(session, account)
    audit.record(session, actor, "account.delete", "account", account.id, **audit_details)
    accounts.delete_account(session, account)
    session.commit()


def create_api_key(
    session: Session,
    caller: Caller,
    *,
    name: str,
    role: Role,
    galleries: list[str] | None,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    """The new key and its secret (shown once)."""
    key, secret = api_keys.create(
        session,
        caller,
        name=name,
        role=role,
        galleries=galleries,
        expires_at=expires_at,
        max_keys=app_settings().api_keys_max_per_organisation,
    )
    audit.record(session, caller, "api_key.create", "api_key", key.id, name=key.name, role=key.role.value)
    session.commit()
    return key, secret


def revoke_api_key(session: Session, caller: Caller, key_id: uuid.UUID) -> None:
    api_keys.revoke(session, caller, key_id)
    audit.record(session, caller, "api_key.revoke", "api_key", key_id)
    session.commit()


def webhook_secret(session: Session, caller: Caller) -> str:
    """The organisation's webhook signing secret, created (and committed) on first use; it signs
    every gallery's webhooks, so a gallery-scoped key may not read it."""
    require_whole_organisation(caller)
    value = webhooks.secret_of(session, caller.organisation_id)
    session.commit()
    return value


def rotate_webhook_secret(session: Session, caller: Caller) -> str:
    value = webhooks.rotate_secret(session, caller.organisation_id)
    audit.record(session, caller, "webhook.rotate_secret", "organisation", caller.organisation_id)
    session.commit()
    return value

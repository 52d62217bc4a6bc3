"""Accounts: bcrypt password hashes and the first admin."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from functools import lru_cache

import bcrypt
from confusable_homoglyphs import confusables
from psycopg.errors import UniqueViolation
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import Settings
from domain import erasure
from domain.errors import ServiceError
from domain.models import Account, AuditEvent, Organisation, Person, Role

# bcrypt only looks at the first 72 bytes; longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_password_rules(password: str, min_length: int) -> None:
    if len(password) < min_length:
        raise ServiceError("weak_password", f"The password must have at least {min_length} characters.")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ServiceError("password_too_long", f"The password must be at most {MAX_PASSWORD_BYTES} bytes.")


def check_email_rules(email: str) -> None:
    """Refuse (400 `invalid_email`) an address that could pass for another one in a list of
    accounts or the audit log: with invisible or control characters (bidirectional overrides,
    zero-width joiners, spaces), or whose local part or a domain label mixes scripts (a Cyrillic
    'а' among Latin letters). One script per part is fine: 'иван@пример.рф' is a real address."""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or len(email) > 254:
        raise ServiceError("invalid_email", "A valid email address is required.")
    if any(unicodedata.category(char)[0] in "CZ" for char in email):
        raise ServiceError(
            "invalid_email",
            "The email address contains invisible or control characters (such as bidirectional overrides "
            "or zero-width spaces): type it again without them.",
        )
    if any(confusables.is_mixed_script(part) for part in (local, *domain.split("."))):
        raise ServiceError(
            "invalid_email",
            "The email address mixes letters of different scripts in one part (such as a Cyrillic 'а' among "
            "Latin letters), which makes it look like another address: use one script per part.",
        )


def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds=rounds)
    return bcrypt.hashpw(password.encode(), salt).decode()


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    """A real hash to compare against when the email is unknown, so that a failed login takes the
    same time whether or not the account exists (of the cost real hashes have: BCRYPT_ROUNDS)."""
    return hash_password("not-a-real-password", rounds).encode()


def authenticate(session: Session, email: str, password: str, *, settings: Settings) -> Account | None:
    """The account for these credentials, or None; the same work is done either way."""
    account = session.execute(select(Account).where(Account.email == normalize_email(email))).scalar_one_or_none()
    candidate = password.encode()[:MAX_PASSWORD_BYTES]
    stored = account.password_hash.encode() if account else _dummy_hash(settings.bcrypt_rounds)
    valid = bcrypt.checkpw(candidate, stored)
    return account if account and valid else None


def create_account(
    session: Session,
    email: str,
    password: str,
    role: Role = Role.user,
    organisation_id: uuid.UUID | None = None,
    *,
    settings: Settings,
) -> Account:
    """An account in the organisation, or (None) in a new organisation of its own: signup, the
    first admin, and each test account are organisations of their own."""
    email = normalize_email(email)
    check_email_rules(email)
    check_password_rules(password, settings.min_password_length)
    if session.execute(select(Account.id).where(Account.email == email)).first():
        raise _account_exists()
    if organisation_id is None:
        organisation = Organisation(id=uuid.uuid4(), name=email)
        session.add(organisation)
        session.flush()
        organisation_id = organisation.id
    password_hash = hash_password(password, settings.bcrypt_rounds)
    account = Account(email=email, password_hash=password_hash, role=role, organisation_id=organisation_id)
    try:
        # A savepoint, so that losing the race below leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(account)
            session.flush()  # waits for a concurrent insert of this email to commit or roll back
    except IntegrityError as error:
        # The same email created concurrently, after the check above: the unique constraint decides.
        if not isinstance(error.orig, UniqueViolation):  # domain/db.py always uses psycopg 3
            raise
        raise _account_exists() from None
    return account


def _account_exists() -> ServiceError:
    return ServiceError("account_exists", "An account with this email already exists.", status=409)


def first_organisation(session: Session) -> uuid.UUID | None:
    """The oldest organisation: the one a single-organisation deployment has."""
    return session.execute(select(Organisation.id).order_by(Organisation.created_at).limit(1)).scalar_one_or_none()


def check_current_password(account: Account, password: str) -> None:
    """Refuse (401) an action on the account itself unless the caller knows its password."""
    if not bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], account.password_hash.encode()):
        raise ServiceError("invalid_credentials", "The current password is wrong.", status=401)


def ensure_an_admin_remains(session: Session, account: Account, new_role: Role | None = None) -> None:
    """Refuse (409 `last_admin`) to demote (`new_role`) or delete (None) the last admin of an
    organisation that keeps other accounts: nobody could manage them any more. The last account
    of all may still delete itself (its organisation goes with it). The organisation's admins are
    locked, so two admins demoting each other at once cannot both succeed."""
    if account.role is not Role.admin or new_role is Role.admin:
        return
    admins = session.execute(
        select(Account.id)
        .where(Account.organisation_id == account.organisation_id, Account.role == Role.admin)
        .with_for_update()
    ).scalars()
    if any(admin != account.id for admin in admins):
        return
    if new_role is None:
        others = session.execute(
            select(func.count()).where(Account.organisation_id == account.organisation_id, Account.id != account.id)
        ).scalar_one()
        if not others:
            return
    raise ServiceError(
        "last_admin",
        "This is the organisation's last admin: make another account admin first.",
        status=409,
    )


def change_password(session: Session, account: Account, current: str, new: str, *, settings: Settings) -> None:
    """Set a new password and revoke every token issued before now."""
    check_current_password(account, current)
    check_password_rules(new, settings.min_password_length)
    account.password_hash = hash_password(new, settings.bcrypt_rounds)
    # JWT `iat` has one-second resolution: tokens from this second on stay valid.
    account.tokens_valid_after = datetime.now(UTC).replace(microsecond=0)


def ensure_first_admin(session: Session, settings: Settings) -> Account | None:
    """Create the admin from ADMIN_EMAIL / ADMIN_PASSWORD when no admin exists yet."""
    email, password = settings.admin_email, settings.admin_password
    if not email or not password:
        return None
    admins = session.execute(select(func.count()).where(Account.role == Role.admin)).scalar_one()
    if admins:
        return None
    return create_account(session, email, password, Role.admin, settings=settings)


def bootstrap_admin(settings: Settings) -> uuid.UUID | None:
    """Create the first admin from `settings` if needed; returns its id (not its email, which would
    end up in the logs of the process that reports it) when one was created."""
    from domain.db import session_scope

    with session_scope() as session:
        account = ensure_first_admin(session, settings)
        return account.id if account else None


def delete_account(session: Session, account: Account) -> None:
    """Delete an account. The database cascades to its linked person (its own face profile), its
    jobs, batches and API keys; the galleries it created stay with the organisation. The last
    account of an organisation takes the organisation with it: its galleries, persons and faces."""
    organisation_id = account.organisation_id
    profile = session.execute(select(Person).where(Person.account_id == account.id)).scalar_one_or_none()
    if profile is not None:
        # Other accounts' finished recognitions may name the face profile: they forget it as they
        # would any deleted person (the cascade below removes the person itself).
        erasure.redact_person(session, profile)
    session.execute(delete(Account).where(Account.id == account.id))
    session.expunge(account)
    if not session.execute(select(func.count()).where(Account.organisation_id == organisation_id)).scalar_one():
        session.execute(delete(Organisation).where(Organisation.id == organisation_id))
        _forget_emails_in_audit(session, organisation_id)


def _forget_emails_in_audit(session: Session, organisation_id: uuid.UUID) -> None:
    """A deleted organisation's audit events stay (by ids, for the operators of the service) but
    nobody of it can read them any more: the email addresses of its accounts go."""
    session.execute(
        update(AuditEvent)
        .where(AuditEvent.organisation_id == organisation_id)
        .values(actor_email=None, details=AuditEvent.details.op("-")("email"))
    )

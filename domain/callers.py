"""Who is calling, as every service sees it: an account logged in with its password, or an API key
of an organisation (a service account). Services decide what a caller may see from this alone.

A key's authority is the smaller of its own and its creator's: its role is the lower of the key's
role and the creator's role as it stands now (the caller is built on every request), and its
gallery scope applies whatever that role is. Demoting a creator demotes its keys at once; deleting
it deletes them (ON DELETE CASCADE)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.errors import ServiceError
from domain.models import Account, ApiKey, Role

RANK = {Role.user: 0, Role.operator: 1, Role.admin: 2}


def lower_role(first: Role, second: Role) -> Role:
    return first if RANK[first] <= RANK[second] else second


@dataclass(frozen=True)
class Caller:
    id: uuid.UUID  # the acting account; for an API key, the account that created it
    email: str
    role: Role
    organisation_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    # An API key's gallery scope: the only galleries it may see or create (None: all of its organisation's).
    galleries: frozenset[str] | None = None

    @classmethod
    def of_account(cls, account: Account) -> Caller:
        return cls(id=account.id, email=account.email, role=account.role, organisation_id=account.organisation_id)

    @classmethod
    def of_key(cls, key: ApiKey, creator: Account) -> Caller:
        """The key as it may act now: never above its creator's current role."""
        return cls(
            id=key.created_by_id,
            email=f"api-key:{key.prefix}",
            role=lower_role(key.role, creator.role),
            organisation_id=key.organisation_id,
            api_key_id=key.id,
            galleries=frozenset(key.galleries) if key.galleries is not None else None,
        )

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def manages_galleries(self) -> bool:
        """Admins and operators work in the organisation's galleries; users only with their own profile."""
        return self.role in (Role.admin, Role.operator)

    @property
    def scoped(self) -> bool:
        """Whether the caller is held to some galleries (a scoped API key), whatever its role."""
        return self.galleries is not None

    def may_use_gallery(self, name: str) -> bool:
        return self.galleries is None or name in self.galleries


def require_role(caller: Caller, roles: tuple[Role, ...]) -> None:
    """The role rule of every action, the API's and the console's alike (a page that hid a button is
    not the check): `caller` must hold one of `roles` (any role when none is named)."""
    if roles and caller.role not in roles:
        raise role_refused(caller, roles)


def role_refused(caller: Caller, roles: tuple[Role, ...]) -> ServiceError:
    """403 naming the role the caller holds, the roles the action needs, and who can change it."""
    needed = " or ".join(role.value for role in roles)
    holder = "This API key" if caller.is_api_key else "Your account"
    return ServiceError(
        "forbidden",
        f"{holder} has the role '{caller.role.value}'; this action needs {needed}. An admin of your "
        "organisation can change roles (the console's Accounts page, or PATCH /api/v1/accounts/{account_id}).",
        status=403,
        role=caller.role.value,
        required_roles=[role.value for role in roles],
    )

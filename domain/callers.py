"""Who is calling, as every service sees it: an account logged in with its password, or an API key
of an organisation (a service account). Services decide what a caller may see from this alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.models import Account, ApiKey, Role


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
    def of_key(cls, key: ApiKey) -> Caller:
        return cls(
            id=key.created_by_id,
            email=f"api-key:{key.prefix}",
            role=key.role,
            organisation_id=key.organisation_id,
            api_key_id=key.id,
            galleries=frozenset(key.galleries) if key.galleries is not None else None,
        )

    @property
    def manages_galleries(self) -> bool:
        """Admins and operators work in the organisation's galleries; users only with their own profile."""
        return self.role in (Role.admin, Role.operator)

    def may_use_gallery(self, name: str) -> bool:
        return self.galleries is None or name in self.galleries

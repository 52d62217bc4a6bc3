"""Administrative commands: `python -m stack.cli migrate | create-admin EMAIL | gallery-indexes`.

Starts the embedded services for the duration of the command when DATABASE_URL is unset.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from config import get_settings
from domain import gallery_indexes
from domain.accounts import bootstrap_admin, create_account, first_organisation
from domain.db import get_engine, session_scope
from domain.errors import ServiceError
from domain.models import Role
from domain.schema import upgrade
from stack.embedded import EmbeddedServices, ensure_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations and create the first admin from settings")
    admin = commands.add_parser("create-admin", help="create an admin account")
    admin.add_argument("email")
    admin.add_argument("--role", choices=[r.value for r in Role], default=Role.admin.value)
    admin.add_argument(
        "--organisation",
        default=None,
        help="the organisation's id (default: the first organisation, or a new one if there is none)",
    )
    indexes = commands.add_parser("gallery-indexes", help="give each large gallery its own HNSW index now")
    indexes.add_argument("--min-faces", type=int, default=None, help="default: GALLERY_INDEX_MIN_FACES")
    args = parser.parse_args(argv)
    password = None
    if args.command == "create-admin":  # asked first: a refusal or Ctrl-C leaves nothing running
        try:
            password = admin_password()
        except AdminPasswordMissing as missing:
            print(f"error: {missing}", file=sys.stderr)
            return 2

    # This DATA_DIR's PostgreSQL only (when DATABASE_URL is unset): these commands need no Redis,
    # so a second instance's run never meets the first one's Redis on the default port.
    services = EmbeddedServices()
    try:
        ensure_services(services, redis=False)
        settings = get_settings()  # after ensure_services: it may set DATABASE_URL
        upgrade()
        if args.command == "migrate":
            created = bootstrap_admin(settings)  # ADMIN_EMAIL / ADMIN_PASSWORD, when no admin exists yet
            if created:
                print(f"created the first admin account {created}")  # its id: stdout ends up in container logs
        if args.command == "create-admin":
            with session_scope() as session:
                organisation = args.organisation or first_organisation(session)
                account = create_account(
                    session, args.email, password, Role(args.role), organisation, settings=settings
                )
                print(f"created {account.role.value} account {account.id}")  # not the email: no addresses in logs
        if args.command == "gallery-indexes":
            min_faces = args.min_faces if args.min_faces is not None else settings.gallery_index_min_faces
            counts = gallery_indexes.sync(
                get_engine(), min_faces=min_faces, build_memory=settings.gallery_index_build_memory
            )
            print(f"gallery indexes: {counts['built']} built, {counts['dropped']} dropped")
        return 0
    except ServiceError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as error:  # a service that would not start: said in one line
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        services.stop()  # what this command started, whatever happened


class AdminPasswordMissing(Exception):
    """No ADMIN_PASSWORD and no terminal to ask on."""


def admin_password() -> str:
    """ADMIN_PASSWORD, or asked for on the terminal (never read from a pipe: it would echo in logs)."""
    if password := os.environ.get("ADMIN_PASSWORD"):
        return password
    if not sys.stdin.isatty():
        raise AdminPasswordMissing(
            "no terminal to ask for the password on: set ADMIN_PASSWORD (e.g. ADMIN_PASSWORD=... make admin EMAIL=...)"
        )
    try:
        return getpass.getpass("Password: ")
    except (EOFError, KeyboardInterrupt):
        raise AdminPasswordMissing("no password given: nothing was created") from None


if __name__ == "__main__":
    sys.exit(main())

"""`faceapi unknowns …`: a gallery's recurring unknown faces (docs/UNKNOWNS.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from faceapi_client.cli import EXIT_OK, _info, _json_option, _print_json, _table, _when, connect


def cmd_enable(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.set_gallery_unknowns(args.gallery, True, retention_days=args.retention_days)
    _info(
        f"gallery {args.gallery} now keeps unmatched faces for {args.retention_days} days: biometric data of "
        "people who did not consent (see the README's ethics section)"
    )
    return EXIT_OK


def cmd_disable(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.set_gallery_unknowns(args.gallery, False)
    _info(f"gallery {args.gallery} keeps no unmatched faces; its pool is deleted")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with connect(args) as api:
        page = api.list_unknowns(args.gallery, order=args.order, limit=args.limit)
    if args.json:
        _print_json(page)
        return EXIT_OK
    _table(
        [
            (g.id, g.sightings, g.faces, _when(g.first_seen), _when(g.last_seen), ", ".join(g.sources))
            for g in page.items
        ],
        ("unknown", "sightings", "faces", "first seen", "last seen", "sources"),
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with connect(args) as api:
        group = api.get_unknown(args.gallery, args.id)
    if args.json:
        _print_json(group)
        return EXIT_OK
    print(f"unknown #{group.id}: {group.sightings} sightings since {_when(group.first_seen)}")
    _table(
        [(f.id, _when(f.seen_at), f.source or "", f.job_id or "", round(f.det_score, 2)) for f in group.items],
        ("face", "seen", "source", "job", "det_score"),
    )
    return EXIT_OK


def cmd_enroll(args: argparse.Namespace) -> int:
    with connect(args) as api:
        enrolled = api.enroll_unknown(args.gallery, args.id, args.name, external_id=args.external_id)
    _info(f"unknown #{args.id} is now person {enrolled.person_id} ({enrolled.faces_enrolled} faces)")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    with connect(args) as api:
        group = api.merge_unknowns(args.gallery, args.id, args.into)
    _info(f"unknown #{args.id} merged into #{group.id} ({group.sightings} sightings)")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.delete_unknown(args.gallery, args.id)
    _info(f"unknown #{args.id} and its faces deleted")
    return EXIT_OK


def add_commands(commands, command: Callable) -> None:
    """The `unknowns` command and its actions, added to the `faceapi` parser."""
    unknowns = command(commands, "unknowns", None, "recurring unknown faces of a gallery (opt-in)")
    actions = unknowns.add_subparsers(dest="action", metavar="ACTION", help="`faceapi unknowns ACTION --help`")
    actions.required = True
    enable = command(actions, "enable", cmd_enable, "keep unmatched faces of a gallery, grouped into strangers")
    enable.add_argument("gallery", metavar="GALLERY", help="the gallery")
    enable.add_argument("--retention-days", type=int, default=30, metavar="DAYS", help="keep faces this long (30)")
    command(actions, "disable", cmd_disable, "stop, and delete the gallery's pool").add_argument(
        "gallery", metavar="GALLERY", help="the gallery"
    )
    listing = command(actions, "list", cmd_list, "the gallery's strangers")
    listing.add_argument("gallery", metavar="GALLERY", help="the gallery")
    listing.add_argument(
        "--order", choices=("last_seen", "count"), default="last_seen", help="most recently seen or most seen first"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _json_option(listing)
    for name, func, help_text in (
        ("show", cmd_show, "one stranger's faces"),
        ("enroll", cmd_enroll, "name a stranger: a person from its best faces"),
        ("merge", cmd_merge, "one stranger seen as two"),
        ("delete", cmd_delete, "forget a stranger"),
    ):
        sub = command(actions, name, func, help_text)
        sub.add_argument("gallery", metavar="GALLERY", help="the gallery")
        sub.add_argument("id", type=int, metavar="ID", help="the unknown's id")
        if name == "show":
            _json_option(sub)
        if name == "enroll":
            sub.add_argument("--name", required=True, help="the person's name")
            sub.add_argument("--external-id", help="your id for the person")
        if name == "merge":
            sub.add_argument("--into", type=int, required=True, metavar="ID", help="the group that keeps its id")

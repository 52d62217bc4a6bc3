"""Back up and restore the database: `python -m stack.backup dump [FILE|DIR] | restore FILE | inspect FILE`.

Everything the service keeps for good is in PostgreSQL: accounts, galleries, persons, their face
embeddings, jobs and the audit log (photos are never kept). A dump is `pg_dump --format=custom`
(compressed, restorable table by table) with a manifest beside it, FILE.json: when, the schema
revision, and the models whose embeddings it holds. An embedding is only comparable with another
of the same model, so `restore` refuses a dump whose faces were made by a model other than the
one this installation loads (--any-model to restore anyway: those faces will match nothing until
the persons are enrolled again).

`restore` needs an empty database (a new one, e.g. `createdb`, or a fresh `make run` DATA_DIR):
it never overwrites data. It then applies newer migrations, so a dump of an older version restores
into a newer one. Like stack.cli, both start the embedded PostgreSQL of DATA_DIR when DATABASE_URL
is unset (the image's `backup` role is `dump`: `docker compose --profile backup run --rm backup`).
pg_dump and pg_restore come from pgserver's PostgreSQL 16 (installed with the runtime
requirements, so they are in the image too), else from PATH; PG_BIN overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

MANIFEST_SUFFIX = ".json"


class BackupError(RuntimeError):
    pass


def pg_binary(name: str) -> str:
    """pg_dump / pg_restore: PG_BIN, else pgserver's (the embedded server's version), else PATH."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]) / name)
    try:
        import pgserver

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    except ImportError:
        pass
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found: install PostgreSQL's client tools or set PG_BIN")
    return found


def libpq_url(url: str) -> str:
    """The URL as libpq takes it (SQLAlchemy's driver suffix removed)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def describe(engine) -> dict:
    """What a database holds, for the manifest and the model check."""
    with engine.connect() as connection:
        tables = set(connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
        if "faces" not in tables:
            return {"tables": sorted(tables), "revision": None, "models": {}}
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        models = dict(connection.execute(text("SELECT model, count(*) FROM faces GROUP BY model")).all())
        persons = connection.execute(text("SELECT count(*) FROM persons")).scalar_one()
    return {"tables": sorted(tables), "revision": revision, "models": models, "persons": persons}


def current_model() -> str:
    """The recognizer this installation loads (its files checked by sha256); no session is built."""
    from config import get_settings
    from workers.engine import resolve_pack

    return resolve_pack(get_settings()).model_name


def dump(database_url: str, path: Path, engine) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = describe(engine)
    partial = path.with_name(path.name + ".partial")
    command = [pg_binary("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(partial)]
    completed = subprocess.run([*command, "--dbname", libpq_url(database_url)], capture_output=True, text=True)
    if completed.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {completed.stderr.strip()}")
    partial.replace(path)  # a dump that exists is complete
    manifest = {
        "file": path.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bytes": path.stat().st_size,
        "schema_revision": state["revision"],
        "models": state["models"],
        "persons": state.get("persons", 0),
        "pg_dump": subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout.strip(),
    }
    Path(str(path) + MANIFEST_SUFFIX).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(path: Path) -> dict:
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    if not manifest.exists():
        raise BackupError(f"{manifest} is missing: it says which model made the dump's embeddings")
    return json.loads(manifest.read_text())


def restore(database_url: str, path: Path, engine, *, any_model: bool = False) -> dict:
    if not path.exists():
        raise BackupError(f"{path} does not exist")
    manifest = read_manifest(path)
    model = current_model()
    others = sorted(set(manifest["models"]) - {model})
    if others and not any_model:
        raise BackupError(
            f"the dump's embeddings were made by {', '.join(others)}, this installation loads {model}: "
            "they would match nothing (restore with --any-model, then enroll those persons again)"
        )
    present = describe(engine)["tables"]
    if present:
        raise BackupError(f"the target database is not empty ({len(present)} tables): restore into a new database")
    command = [pg_binary("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    completed = subprocess.run(
        [*command, "--dbname", libpq_url(database_url), str(path)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise BackupError(f"pg_restore failed: {completed.stderr.strip()}")
    from domain.schema import upgrade

    upgrade()  # a dump of an older version: bring it to this version's schema
    restored = describe(engine)
    return {"restored": path.name, "schema_revision": restored["revision"], "models": restored["models"],
            "persons": restored["persons"], "model_loaded": model}  # fmt: skip


DUMP_PREFIX = "faceapi-"


def target_path(given: Path | None) -> Path:
    """FILE as given, or a timestamped file in DIR (default backups/)."""
    if given is not None and not given.is_dir() and given.suffix:
        return given
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (given or Path("backups")) / f"{DUMP_PREFIX}{stamp}.dump"


def prune(directory: Path, keep: int) -> list[str]:
    """Remove all but the `keep` newest timestamped dumps (and their manifests) in `directory`."""
    dumps = sorted(directory.glob(f"{DUMP_PREFIX}*.dump"))
    removed = []
    for old in dumps[: max(0, len(dumps) - keep)]:
        old.unlink()
        Path(str(old) + MANIFEST_SUFFIX).unlink(missing_ok=True)
        removed.append(old.name)
    return removed


def database():
    """(database URL, the embedded server to stop afterwards or None): DATABASE_URL, else the
    embedded PostgreSQL of DATA_DIR (started for the command, as stack.cli does)."""
    from config import get_settings
    from stack.embedded import start_postgres, stop_postgres

    settings = get_settings()
    if settings.database_url:
        return settings.database_url, None
    server, url = start_postgres(settings.data_dir)
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    return url, (lambda: stop_postgres(server)) if server is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser(
        "dump", help="pg_dump the database to FILE, or DIR/faceapi-<time>.dump (default DIR: backups)"
    )
    dumping.add_argument("file", nargs="?", type=Path, metavar="FILE|DIR")
    dumping.add_argument("--keep", type=int, default=0, help="then keep only the newest N timestamped dumps in DIR")
    restoring = commands.add_parser("restore", help="restore FILE into an empty database, then migrate")
    restoring.add_argument("file", type=Path)
    restoring.add_argument("--any-model", action="store_true", help="restore embeddings of another model too")
    inspecting = commands.add_parser("inspect", help="print a dump's manifest")
    inspecting.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "inspect":
        print(json.dumps(read_manifest(args.file), indent=2))
        return 0

    from domain.db import get_engine

    url, stop = database()
    try:
        if args.command == "dump":
            path = target_path(args.file)
            result = dump(url, path, get_engine())
            if args.keep > 0:
                result["pruned"] = prune(path.parent, args.keep)
        else:
            result = restore(url, args.file, get_engine(), any_model=args.any_model)
        print(json.dumps(result))
        return 0
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        get_engine().dispose()
        if stop:
            stop()


if __name__ == "__main__":
    sys.exit(main())

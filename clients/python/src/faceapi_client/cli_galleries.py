"""`faceapi galleries export | import | reembed`: move a gallery between deployments or organisations,
and embed it again after the recognizer changed (docs/EXPORT.md), with progress bars."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from faceapi_client.cli import EXIT_OK, _info, _json_option, _print_json, connect


class _Bar:
    """A tqdm bar fed from a job's `progress` ({"done", "total"}) as `follow` polls it."""

    def __init__(self, description: str, disabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(desc=description, unit="face", disable=True if disabled else None, leave=False)

    def __call__(self, job) -> None:
        progress = getattr(job, "progress", None) or {}
        if progress.get("total") is not None:
            self.bar.total = progress["total"]
            self.bar.n = progress.get("done", 0)
        self.bar.set_postfix_str(job.status)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _followed(description: str, args: argparse.Namespace, run: Callable):
    bar = _Bar(description, args.no_progress)
    try:
        return run(bar)
    finally:
        bar.close()


def cmd_export(args: argparse.Namespace) -> int:
    output = Path(args.output)
    with connect(args) as api:
        archive = _followed(f"exporting {args.name}", args, lambda bar: api.export_gallery(args.name, on_progress=bar))
    output.write_bytes(archive)
    _info(f"gallery {args.name} exported to {output} ({len(archive)} bytes; it holds biometric data: keep it safe)")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    with connect(args) as api:
        job = _followed(
            f"importing into {args.name}",
            args,
            lambda bar: api.import_gallery(args.name, Path(args.file), on_conflict=args.on_conflict, on_progress=bar),
        )
    result = job.result
    if args.json:
        _print_json(result)
        return EXIT_OK
    persons, faces = result["persons"], result["faces"]
    _info(
        f"gallery {result['gallery']}: persons {persons['created']} created, {persons['merged']} merged, "
        f"{persons['skipped']} skipped; faces {faces['added']} added, {faces['reembedded']} re-embedded, "
        f"{faces['existing']} already there, {faces['failed']} failed"
    )
    for item in result["items"]:
        for error in item["errors"]:
            _info(f"  {item['name']}: face {error['face']}: {error['code']}: {error['message']}")
    return EXIT_OK


def cmd_reembed(args: argparse.Namespace) -> int:
    with connect(args) as api:
        job = _followed(
            f"re-embedding {args.name}",
            args,
            lambda bar: api.reembed_gallery(args.name, skip_missing=args.skip_missing, on_progress=bar),
        )
    result = job.result
    if args.json:
        _print_json(result)
        return EXIT_OK
    _info(
        f"gallery {result['gallery']} now uses {result['model']} (was {result['previous_model']}): "
        f"{result['reembedded']} of {result['faces']} faces embedded again"
    )
    if result["faces_without_crop"]:
        _info(f"{len(result['faces_without_crop'])} faces had no crop and were left as they were")
    return EXIT_OK


def add_commands(gallery_commands, command: Callable) -> None:
    """`export`, `import` and `reembed`, added to `faceapi galleries`."""
    export = command(gallery_commands, "export", cmd_export, "export a gallery to an archive file")
    export.add_argument("name", metavar="NAME", help="the gallery's name")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the archive (.zip)")
    imports = command(gallery_commands, "import", cmd_import, "import an archive into a gallery (created if needed)")
    imports.add_argument("name", metavar="NAME", help="the gallery to import into")
    imports.add_argument("file", metavar="FILE", help="an archive written by `faceapi galleries export`")
    imports.add_argument(
        "--on-conflict",
        choices=("skip", "merge", "fail"),
        default="skip",
        help="a person the gallery already has (same external_id): skip it (default), add its faces, or fail",
    )
    reembed = command(gallery_commands, "reembed", cmd_reembed, "embed every face again with the current model")
    reembed.add_argument("name", metavar="NAME", help="the gallery's name")
    reembed.add_argument(
        "--skip-missing", action="store_true", help="switch even if some faces have no crop (they stay unused)"
    )
    for sub in (export, imports, reembed):
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    _json_option(imports)
    _json_option(reembed)

"""The `faceapi` command line."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from faceapi_client import __version__, errors, models
from faceapi_client.client import FaceAPI

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED_ITEMS}    done, but some photos (enroll) or the job (recognize, verify) failed
  {EXIT_USAGE}    usage or local input error: bad option, missing folder or photo, bad mapping file
  {EXIT_AUTH}    authentication or permission: wrong email or password, expired, revoked or invalid API key,
       a role that may not do this (401, 403)
  {EXIT_REFUSED}    the API refused the request: not found, conflict, invalid field (other 4xx)
  {EXIT_UNAVAILABLE}    the service is unreachable or failing: connection refused, timeout, 5xx, rate limit
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); `faceapi enroll` resumes where it stopped when run again
"""

ENVIRONMENT = """\
environment:
  FACEAPI_URL        the service (default http://127.0.0.1:8000)
  FACEAPI_API_KEY    an API key (fk_...), sent as the bearer
  FACEAPI_EMAIL      with FACEAPI_PASSWORD: log in with a password (prompted for on a terminal when unset)
  FACEAPI_PASSWORD
"""


class UsageError(Exception):
    """A problem with the command line or local input: exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# --- output helpers ---------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    if isinstance(value, models.Model):
        value = value.model_dump(mode="json", exclude_none=False)
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, models.Model) else v for v in value]
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _table(rows: list[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _info(message: str) -> None:
    print(message, file=sys.stderr)


# --- connection ------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "url": getattr(args, "url", None) or os.environ.get("FACEAPI_URL") or "http://127.0.0.1:8000",
        "api_key": getattr(args, "api_key", None) or os.environ.get("FACEAPI_API_KEY") or None,
        "email": getattr(args, "email", None) or os.environ.get("FACEAPI_EMAIL") or None,
        "password": getattr(args, "password", None) or os.environ.get("FACEAPI_PASSWORD") or None,
    }


def connect(args: argparse.Namespace) -> FaceAPI:
    settings = _settings(args)
    if settings["api_key"]:
        settings["email"] = settings["password"] = None
    elif settings["email"]:
        if not settings["password"]:
            if not sys.stdin.isatty():
                raise UsageError("no password: set FACEAPI_PASSWORD (or use an API key, FACEAPI_API_KEY)")
            settings["password"] = getpass.getpass(f"Password for {settings['email']}: ")
    else:
        raise UsageError(
            "no credentials: set FACEAPI_API_KEY, or FACEAPI_EMAIL and FACEAPI_PASSWORD (or --api-key / --email)"
        )
    api = FaceAPI(
        settings["url"],
        api_key=settings["api_key"],
        email=settings["email"],
        password=settings["password"],
        timeout=getattr(args, "timeout", None) or 60.0,
    )
    if not settings["api_key"]:
        api.login()  # a wrong password fails here, before any work
    return api


# --- enroll --------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "photos"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def cmd_enroll(args: argparse.Namespace) -> int:
    from faceapi_client import enroll as enrolling

    folder = Path(args.dir)
    if not folder.exists():
        raise UsageError(f"the folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    report = (
        Path(args.report)
        if args.report
        else Path.cwd() / f"faceapi-enroll-{_slug(folder.resolve().name)}-{_slug(args.gallery)}.json"
    )
    if report.exists() and report.is_dir():
        report = report / f"faceapi-enroll-{_slug(folder.resolve().name)}-{_slug(args.gallery)}.json"
    if _inside(report, folder):
        raise UsageError(
            f"the report {report} would be written inside the photo folder {folder}: "
            "pass --report FILE outside it (or run from another directory)"
        )

    if args.mapping:
        try:
            items = enrolling.mapping_items(folder, args.mapping)
        except enrolling.MappingError as exc:
            raise UsageError(str(exc)) from None
        items, skipped = enrolling.without_unsupported(items)
        listed = {item.path.resolve() for item in items}
        left_out = [
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in enrolling.PHOTO_SUFFIXES and p.resolve() not in listed
        ]
        if left_out:
            _info(f"note: {len(left_out)} photo(s) in {folder} are not in the mapping file and are left out")
    else:
        items = enrolling.folder_items(folder)
        skipped = enrolling.skipped_in_folder(folder)
        loose = enrolling.loose_photos(folder)
        if loose:
            _info(f"note: {len(loose)} photo(s) lie directly in {folder}, outside a person's sub-folder: left out")
    if not items:
        raise UsageError(
            f"no photos to enroll in {folder}"
            + ("" if args.mapping else " (expected one sub-folder per person, with JPEG, PNG or WebP photos)")
            + (f"; {len(skipped)} file(s) skipped, the first: {skipped[0]}" if skipped else "")
        )

    url = _settings(args)["url"]
    try:
        state = enrolling.EnrollState.open(report, url, args.gallery)
    except enrolling.StateMismatch as exc:
        raise UsageError(str(exc)) from None
    state.skipped_files = skipped

    if args.dry_run:
        return _dry_run(items, state, args, report)

    api = connect(args)
    from tqdm import tqdm

    counts = {"enrolled": 0, "duplicate": 0, "skipped": 0, "failed": 0}
    bar = tqdm(
        total=len(items),
        unit="photo",
        desc=f"enroll → {args.gallery}",
        file=sys.stderr,
        disable=True if args.no_progress else None,
        dynamic_ncols=True,
    )

    def progress(event: enrolling.ProgressEvent) -> None:
        status = event.outcome.status
        if status == "skipped" and event.outcome.earlier == "failed":
            status = "failed"
        counts[status] = counts.get(status, 0) + 1
        bar.set_postfix(counts, refresh=False)
        bar.update(1)

    try:
        summary = enrolling.enroll_photos(
            api,
            items,
            args.gallery,
            state=state,
            on_progress=progress,
            batch_size=args.batch_size,
            force=args.force,
            retry_failed=args.retry_failed,
        )
    except KeyboardInterrupt:
        bar.close()
        _info(f"faceapi: interrupted with {_enrolled(state, items)}; {_resume_hint(report)}")
        return EXIT_INTERRUPTED
    except errors.FaceAPIError as error:  # the service went away, or refused every photo's batch
        bar.close()
        _info(f"{_one_line(error)}; {_enrolled(state, items)}, {_resume_hint(report)}")
        return exit_code_of(error)
    finally:
        bar.close()
        api.close()
    _print_summary(summary, len(items), report)
    _print_skipped(skipped)
    if summary.failed:
        _info(f"faceapi: {len(summary.failed)} of {summary.total} photos failed (listed above; report: {report})")
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def _enrolled(state: Any, items: list) -> str:
    from faceapi_client.enroll import DONE

    files = {item.file for item in items}
    done = sum(1 for file, record in state.photos.items() if file in files and record.get("status") in DONE)
    return f"{done} of {len(items)} photos enrolled"


def _resume_hint(report: Path) -> str:
    return f"run the same command again to resume (report: {report})"


def _print_summary(summary: Any, total: int, report: Path) -> None:
    print(f"Gallery {summary.gallery}: {total} photo(s) of {len(summary.persons)} person(s) with faces")
    print(f"  enrolled now                  {summary.enrolled}")
    print(f"  already enrolled (no change)  {summary.duplicate}")
    print(f"  done in an earlier run        {summary.skipped}")
    print(f"  failed                        {len(summary.failed)}")
    if summary.failed:
        print("Failures:")
        for failure in summary.failed[:100]:
            extra = f" person_id={failure.details['person_id']}" if failure.details.get("person_id") else ""
            print(f"  {failure.file}: {failure.message} ({failure.code}{extra})")
        if len(summary.failed) > 100:
            print(f"  ... and {len(summary.failed) - 100} more (see the report)")
    print(f"Report: {report}")


def _print_skipped(skipped: list) -> None:
    """Every file not sent, with why and what to do (HEIC: convert it)."""
    if not skipped:
        return
    print(f"Skipped, not sent: {len(skipped)} file(s)")
    for file in skipped[:100]:
        print(f"  {file}")
    if len(skipped) > 100:
        print(f"  ... and {len(skipped) - 100} more (see the report)")


def _dry_run(items: list, state: Any, args: argparse.Namespace, report: Path) -> int:
    from faceapi_client.enroll import plan_enrollment

    plan = plan_enrollment(items, state, retry_failed=args.retry_failed)
    persons = {item.person_key for item in items}
    print(f"Dry run, nothing sent: {len(items)} photo(s) of {len(persons)} person(s) into gallery {args.gallery}")
    print(f"  to send                          {len(plan.to_send)}")
    print(f"  sent by an interrupted run       {len(plan.in_flight)}  (followed, not sent again)")
    print(f"  done in an earlier run           {len(plan.done)}")
    print(f"  failed before (--retry-failed)   {len(plan.failed_before)}")
    print(f"  problems                         {len(plan.local_errors)}")
    for failure in plan.local_errors[:100]:
        print(f"    {failure.file}: {failure.message} ({failure.code})")
    print(f"  skipped, not sent                {len(state.skipped_files)}")
    for skipped in state.skipped_files[:100]:
        print(f"    {skipped}")
    by_person: dict[tuple[str, str], list] = {}
    for item in plan.to_send:
        by_person.setdefault(item.person_key, []).append(item)
    if by_person and args.verbose:
        print("Persons to enroll:")
        for (kind, value), members in by_person.items():
            label = members[0].name + (f" [{value}]" if kind == "external_id" else "")
            print(f"  {label}: {len(members)} photo(s)")
    print(f"Report: {report} ({'exists' if report.exists() else 'not written by a dry run'})")
    return EXIT_OK


# --- recognize and verify ------------------------------------------------------------------------------


def cmd_recognize(args: argparse.Namespace) -> int:
    photos = [Path(p) for p in args.photos]
    for photo in photos:
        if not photo.is_file():
            raise UsageError(f"the photo {photo} does not exist")
    draw_to = Path(args.draw) if args.draw else None
    if draw_to is not None:
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise UsageError("--draw needs Pillow: pip install 'faceapi-client[draw]'") from None
        if len(photos) > 1:
            draw_to.mkdir(parents=True, exist_ok=True)
    api = connect(args)
    failed = 0
    outputs = []
    with api:
        for photo, job_id, outcome in _recognitions(api, photos, args):
            if isinstance(outcome, models.ErrorDetail):
                failed += 1
                if args.json:
                    outputs.append({"photo": str(photo), "error": {"code": outcome.code, "message": outcome.message}})
                else:
                    print(f"{photo}: {outcome.message} ({outcome.code})")
                continue
            result = outcome
            if args.json:
                document = result.model_dump(mode="json", exclude={"photos"})  # one photo's, as ever
                outputs.append({"photo": str(photo), "job_id": job_id, **document})
            else:
                _print_recognition(photo, result, args.gallery)
            if draw_to is not None:
                from faceapi_client.draw import draw_faces

                target = draw_to if len(photos) == 1 else draw_to / f"{photo.stem}-faces.jpg"
                draw_faces(photo, result, target)
                _info(f"drew {len(result.faces)} face(s) on {target}")
    if args.json:
        _print_json(outputs if len(photos) > 1 else outputs[0])
    if failed:
        _info(f"faceapi: recognition failed for {failed} of {len(photos)} photo(s)")
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def _recognitions(
    api: FaceAPI, photos: list[Path], args: argparse.Namespace
) -> Iterator[tuple[Path, str, models.RecognizeResult | models.ErrorDetail]]:
    """Each photo's recognition (or why it failed) in order: one photo as one job; several in jobs
    of up to --per-job photos each (one request and one job for many photos)."""
    options = {"gallery": args.gallery, "threshold": args.threshold, "top_k": args.top_k, "max_faces": args.max_faces}
    if len(photos) == 1:
        try:
            job = api.recognize(photos[0], **options)
        except errors.JobFailed as failure:
            yield photos[0], "", models.ErrorDetail(code=failure.code, message=failure.message)
            return
        yield photos[0], job.id, job.result
        return
    for start in range(0, len(photos), args.per_job):
        chunk = photos[start : start + args.per_job]
        try:
            job = api.recognize_many(chunk, **options)
        except errors.JobFailed as failure:
            for photo in chunk:
                yield photo, "", models.ErrorDetail(code=failure.code, message=failure.message)
            continue
        for index, (photo, entry) in enumerate(zip(chunk, job.result.photos or [], strict=True)):
            yield photo, job.id, entry.error or job.result.photo_result(index)


def _print_recognition(photo: Path, result: models.RecognizeResult, gallery: str) -> None:
    print(
        f"{photo}: {len(result.faces)} face(s), gallery {gallery} "
        f"(threshold {result.threshold:.2f}, {result.gallery_faces if result.gallery_faces is not None else '?'} faces)"
    )
    rows = []
    for number, face in enumerate(result.faces, start=1):
        box = ",".join(str(round(v)) for v in face.bbox)
        if not face.matches:
            rows.append((number, box, f"{face.det_score:.2f}", "(unknown)", "", ""))
        for rank, match in enumerate(face.matches):
            rows.append(
                (
                    number if rank == 0 else "",
                    box if rank == 0 else "",
                    f"{face.det_score:.2f}" if rank == 0 else "",
                    match.name,
                    match.external_id or "",
                    f"{match.similarity:.3f}",
                )
            )
    if rows:
        _table(rows, ("face", "box x1,y1,x2,y2", "score", "match", "external_id", "similarity"))


def cmd_verify(args: argparse.Namespace) -> int:
    first = Path(args.a)
    if not first.is_file():
        raise UsageError(f"the photo {first} does not exist")
    if (args.b is None) == (args.person is None):
        raise UsageError("give a second photo B, or --person ID (not both)")
    if args.b is not None and not Path(args.b).is_file():
        raise UsageError(f"the photo {args.b} does not exist")
    with connect(args) as api:
        try:
            job = api.verify(first, Path(args.b) if args.b else None, person_id=args.person, threshold=args.threshold)
        except errors.JobFailed as failure:
            if args.json:
                _print_json({"error": {"code": failure.code, "message": failure.message, **failure.details}})
            _info(f"faceapi: verification failed: {failure.message} ({failure.code})")
            return EXIT_FAILED_ITEMS
    result = job.result
    if args.json:
        _print_json(result)
    else:
        verdict = "yes" if result.same_person else "no"
        print(f"same person: {verdict} (similarity {result.similarity:.3f}, threshold {result.threshold:.3f})")
        for note in result.notes:
            print(f"note: {note}")
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    photos = [Path(p) for p in args.photos]
    for photo in photos:
        if not photo.is_file():
            raise UsageError(f"the photo {photo} does not exist")
    outputs = []
    with connect(args) as api:
        for photo in photos:
            job = api.detect(photo, max_faces=args.max_faces, landmarks=106 if args.landmarks else None)
            if args.json:
                outputs.append({"photo": str(photo), "job_id": job.id, **job.result.model_dump(mode="json")})
            else:
                _print_detection(photo, job.result)
    if args.json:
        _print_json(outputs if len(photos) > 1 else outputs[0])
    return EXIT_OK


def _print_detection(photo: Path, result: models.DetectResult) -> None:
    print(f"{photo}: {len(result.faces)} face(s)")
    rows = []
    for number, face in enumerate(result.faces, start=1):
        pose = face.pose
        rows.append(
            (
                number,
                ",".join(str(round(v)) for v in face.bbox),
                f"{face.det_score:.2f}",
                f"{pose.yaw:.0f}/{pose.pitch:.0f}/{pose.roll:.0f}" if pose else "",
                face.quality_for_recognition or "",
            )
        )
    if rows:
        _table(rows, ("face", "box x1,y1,x2,y2", "score", "yaw/pitch/roll", "quality"))


def cmd_search(args: argparse.Namespace) -> int:
    with connect(args) as api:
        result = api.search(args.face_id, gallery=args.gallery, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        _print_json(result)
        return EXIT_OK
    print(
        f"face {result.face_id} (person {result.person_id}) in gallery {result.gallery}, "
        f"threshold {result.threshold:.2f}"
    )
    _table(
        [(m.person_id, m.name, m.external_id or "", f"{m.similarity:.3f}") for m in result.matches],
        ("person", "name", "external_id", "similarity"),
    )
    _info(f"{len(result.matches)} match(es)")
    return EXIT_OK


# --- persons, galleries, jobs, keys -------------------------------------------------------------------------


def cmd_persons_list(args: argparse.Namespace) -> int:
    with connect(args) as api:
        persons = list(api.iter_persons(args.gallery, external_id=args.external_id, q=args.q))
    if args.json:
        _print_json(persons)
        return EXIT_OK
    _table(
        [(p.id, p.name, p.external_id, p.face_count, _when(p.created_at)) for p in persons],
        ("id", "name", "external_id", "faces", "created"),
    )
    _info(f"{len(persons)} person(s) in gallery {args.gallery}")
    return EXIT_OK


def cmd_persons_show(args: argparse.Namespace) -> int:
    with connect(args) as api:
        person = api.get_person(args.id)
    if args.json:
        _print_json(person)
        return EXIT_OK
    print(f"{person.name} ({person.id})")
    print(f"  gallery      {person.gallery}")
    print(f"  external_id  {person.external_id or ''}")
    print(f"  faces        {person.face_count}")
    print(f"  created      {_when(person.created_at)}")
    if person.consent is not None:
        print(f"  consent      {_when(person.consent.given_at)} by {person.consent.given_by or ''}")
    if person.metadata:
        print(f"  metadata     {json.dumps(person.metadata, ensure_ascii=False)}")
    _print_faces(person.faces or [])
    return EXIT_OK


def _print_faces(faces: list[models.Face]) -> None:
    _table(
        [
            (
                f.id,
                f"{f.det_score:.2f}",
                ",".join(str(round(v)) for v in f.bbox),
                f.photo_sha256_prefix,
                _when(f.created_at),
            )
            for f in faces
        ],
        ("face id", "score", "box", "photo sha256", "created"),
    )


def cmd_persons_faces(args: argparse.Namespace) -> int:
    with connect(args) as api:
        faces = api.list_faces(args.id)
    if args.json:
        _print_json(faces)
    else:
        _print_faces(faces)
    return EXIT_OK


def cmd_persons_delete(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.delete_person(args.id)
    _info(f"deleted person {args.id} and its faces")
    return EXIT_OK


def _photo_argument(value: str) -> Path:
    photo = Path(value)
    if not photo.is_file():
        raise UsageError(f"the photo {photo} does not exist")
    return photo


def _enrolled_face(args: argparse.Namespace, enroll: Callable[[], models.EnrollJob]) -> int:
    """Run one enrollment and print its face, or its refusal (the faces to choose from, if several)."""
    try:
        job = enroll()
    except errors.JobFailed as failure:
        if args.json:
            _print_json({"error": {"code": failure.code, "message": failure.message, **failure.details}})
        _info(f"faceapi: enrollment failed: {failure.message} ({failure.code})")
        for target in failure.details.get("target_faces") or ():
            _info(f"  --target-face {target}")
        return EXIT_FAILED_ITEMS
    result = job.result
    if args.json:
        _print_json(result)
        return EXIT_OK
    print(f"person {result.person_id}: face {result.face_id}{' (already enrolled)' if result.duplicate else ''}")
    for other in result.possible_duplicate_of:
        _info(
            f"  warning: this face matches {other.get('name')} ({other.get('person_id')}), "
            f"similarity {other.get('similarity', 0):.3f}: one face, two names?"
        )
    return EXIT_OK


def cmd_persons_add(args: argparse.Namespace) -> int:
    photo = _photo_argument(args.photo)
    with connect(args) as api:
        return _enrolled_face(
            args,
            lambda: api.enroll_person(
                photo,
                name=args.name,
                gallery=args.gallery,
                external_id=args.external_id,
                target_face=args.target_face,
                force=args.force,
            ),
        )


def cmd_persons_add_face(args: argparse.Namespace) -> int:
    photo = _photo_argument(args.photo)
    with connect(args) as api:
        return _enrolled_face(
            args, lambda: api.add_face(args.id, photo, force=args.force, target_face=args.target_face)
        )


def cmd_persons_merge(args: argparse.Namespace) -> int:
    with connect(args) as api:
        person = api.merge_persons(args.id, args.into)
    _info(f"merged person {args.id} into {person.name} ({person.id}), who now has {person.face_count} face(s)")
    return EXIT_OK


def cmd_persons_move_face(args: argparse.Namespace) -> int:
    with connect(args) as api:
        person = api.move_face(args.id, args.face_id, args.to)
    _info(f"moved face {args.face_id} to {person.name} ({person.id})")
    return EXIT_OK


def cmd_persons_crop(args: argparse.Namespace) -> int:
    with connect(args) as api:
        Path(args.output).write_bytes(api.get_face_crop(args.id, args.face_id))
    _info(f"wrote the crop of face {args.face_id} to {args.output}")
    return EXIT_OK


def cmd_persons_remove_face(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.delete_face(args.id, args.face_id)
    _info(f"removed face {args.face_id} of person {args.id}")
    return EXIT_OK


def cmd_galleries_list(args: argparse.Namespace) -> int:
    with connect(args) as api:
        galleries = list(api.iter_galleries())
    if args.json:
        _print_json(galleries)
        return EXIT_OK
    _table(
        [
            (g.name, g.person_count, "derived" if g.match_threshold is None else g.match_threshold, _when(g.created_at))
            for g in galleries
        ],
        ("name", "persons", "threshold", "created"),
    )
    return EXIT_OK


def cmd_galleries_create(args: argparse.Namespace) -> int:
    with connect(args) as api:
        gallery = api.create_gallery(args.name, match_threshold=args.threshold)
    if args.json:
        _print_json(gallery)
    else:
        _info(f"created gallery {gallery.name}")
    return EXIT_OK


def cmd_galleries_delete(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.delete_gallery(args.name)
    _info(f"deleted gallery {args.name} with its persons, faces and jobs")
    return EXIT_OK


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect(args) as api:
        page = api.list_jobs(status=args.status, type=args.type, limit=args.limit)
    if args.json:
        _print_json(page)
        return EXIT_OK
    _table(
        [(j.id, j.type, j.status, j.gallery, j.error.code if j.error else "", _when(j.created_at)) for j in page.items],
        ("id", "type", "status", "gallery", "error", "created"),
    )
    return EXIT_OK


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with connect(args) as api:
        try:
            job = api.wait(args.id, timeout=args.wait) if args.wait else api.get_job(args.id)
        except errors.WaitTimeout:
            job = api.get_job(args.id)  # still running: show it as it is
    if args.json:
        _print_json(job)
        return EXIT_OK
    print(f"job {job.id}: {job.type}, {job.status}")
    for label, value in (("gallery", job.gallery), ("person", job.person_id), ("batch", job.batch_id)):
        if value:
            print(f"  {label:9} {value}")
    print(f"  created   {_when(job.created_at)}")
    if job.finished_at:
        print(f"  finished  {_when(job.finished_at)}")
    if job.error is not None:
        print(f"  error     {job.error.message} ({job.error.code})")
    if job.result is not None:
        result = job.result.model_dump(mode="json") if isinstance(job.result, models.Model) else job.result
        print("  result    " + json.dumps(result, ensure_ascii=False))
    return EXIT_OK


def cmd_keys_create(args: argparse.Namespace) -> int:
    with connect(args) as api:
        key = api.create_api_key(args.name, args.role, galleries=args.gallery or None, expires_at=args.expires_at)
    if args.json:
        _print_json(key)
    else:
        print(key.key)
        _info(f"API key {key.name} ({key.prefix or key.id}, role {key.role}) created: store it now, it is shown once")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    with connect(args) as api:
        keys = api.list_api_keys()
    if args.json:
        _print_json(keys)
        return EXIT_OK
    _table(
        [
            (
                k.id,
                k.name,
                k.prefix,
                k.role,
                ",".join(k.galleries) if k.galleries is not None else "all",
                _when(k.expires_at) or "never",
                _when(k.last_used_at),
            )
            for k in keys
        ],
        ("id", "name", "prefix", "role", "galleries", "expires", "last used"),
    )
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with connect(args) as api:
        api.revoke_api_key(args.id)
    _info(f"revoked API key {args.id}")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace) -> int:
    with connect(args) as api:
        account = api.me()
    if args.json:
        _print_json(account)
    else:
        key = getattr(account, "api_key", None)
        if key:
            galleries = ", ".join(key["galleries"]) if key.get("galleries") is not None else "all galleries"
            print(
                f"API key {key['name']} ({key['prefix']}..., {key['role']}, {galleries}) "
                f"of {account.email} at {api.url}"
            )
        else:
            print(f"{account.email} ({account.role}) at {api.url}")
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Connection options, accepted before or after the command (defaults come from the environment)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (default: the environment variables below)")
    group.add_argument(
        "--url", default=argparse.SUPPRESS, metavar="URL", help="the service, e.g. http://127.0.0.1:8000 (FACEAPI_URL)"
    )
    group.add_argument(
        "--api-key", default=argparse.SUPPRESS, metavar="KEY", help="an API key fk_... (FACEAPI_API_KEY)"
    )
    group.add_argument("--email", default=argparse.SUPPRESS, help="log in with this email (FACEAPI_EMAIL)")
    group.add_argument(
        "--password",
        default=argparse.SUPPRESS,
        help="the password (FACEAPI_PASSWORD; prefer the variable or the prompt: arguments show in `ps`)",
    )
    group.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS", help="per request (60)")
    return common


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


# Adds one command (or action) to a sub-parser group: (group, name, func, help[, description]) -> its parser.
CommandAdder = Callable[..., argparse.ArgumentParser]


def _actions(parser: argparse.ArgumentParser, group: str) -> Any:
    """The ACTION sub-commands of a command group (`faceapi persons ACTION`)."""
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", parser_class=Parser, help=f"`faceapi {group} ACTION --help` for its options"
    )
    actions.required = True
    return actions


def _add_enroll(commands: Any, command: CommandAdder) -> None:
    """`faceapi enroll DIR`: a folder of photos, resumable."""
    enroll = command(
        commands,
        "enroll",
        cmd_enroll,
        "enroll a folder of photos (one sub-folder per person, or a CSV mapping)",
        "Enroll every photo of DIR into a gallery: one sub-folder per person (its name is the person's name),\n"
        "or the photos a CSV mapping file names (columns file,name[,external_id]; file relative to DIR).\n"
        "Consent is given for every photo sent. Interrupt it whenever (Ctrl-C) and run the same command\n"
        "again: it resumes from its report and never enrolls a photo twice. The report (JSON, every photo's\n"
        "outcome) is written to --report, by default ./faceapi-enroll-<folder>-<gallery>.json, never into DIR.",
    )
    enroll.add_argument("dir", metavar="DIR", help="the folder of photos")
    enroll.add_argument(
        "--gallery", required=True, metavar="NAME", help="the gallery to enroll into (created if needed)"
    )
    enroll.add_argument(
        "--mapping", metavar="CSV", help="a CSV file with columns file,name[,external_id]; file names relative to DIR"
    )
    enroll.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing (no login)")
    enroll.add_argument(
        "--report", metavar="FILE", help="the report file (default ./faceapi-enroll-<folder>-<gallery>.json)"
    )
    enroll.add_argument(
        "--batch-size", type=int, default=50, metavar="N", help="photos per request (default 50, at most 500)"
    )
    enroll.add_argument(
        "--force", action="store_true", help="enroll photos that do not resemble the person's other faces (audited)"
    )
    enroll.add_argument(
        "--retry-failed", action="store_true", help="send again photos refused in an earlier run (no_face, ...)"
    )
    enroll.add_argument("--no-progress", action="store_true", help="no progress bar")
    enroll.add_argument("-v", "--verbose", action="store_true", help="with --dry-run: list the persons")


def _add_recognize(commands: Any, command: CommandAdder) -> None:
    """`faceapi recognize PHOTO...`."""
    recognize = command(
        commands,
        "recognize",
        cmd_recognize,
        "recognize the faces in photos",
        "Recognize every face in each PHOTO against a gallery: a table of faces (largest first) and\n"
        "their matches (best first, at or above the threshold), or JSON.",
    )
    recognize.add_argument("photos", nargs="+", metavar="PHOTO", help="JPEG, PNG or WebP photos")
    recognize.add_argument("--gallery", default="default", metavar="NAME", help="the gallery (default: default)")
    recognize.add_argument(
        "--threshold", type=float, metavar="T", help="similarity a match needs (default: the gallery's)"
    )
    recognize.add_argument("--top-k", type=int, metavar="K", help="matches per face (default 5)")
    recognize.add_argument("--max-faces", type=int, metavar="N", help="faces per photo, largest first (default 20)")
    recognize.add_argument(
        "--per-job",
        type=int,
        default=32,
        metavar="N",
        help="photos sent in one job when several are given (at most the server's RECOGNIZE_MAX_IMAGES; default 32)",
    )
    recognize.add_argument(
        "--draw",
        metavar="OUT.jpg",
        help="write the photo with each face's box and name drawn on it (with several photos: a folder)",
    )
    _json_option(recognize)


def _add_verify(commands: Any, command: CommandAdder) -> None:
    """`faceapi verify A [B]`: 1:1."""
    verify = command(
        commands,
        "verify",
        cmd_verify,
        "are two photos the same person?",
        "1:1 verification: are the faces in photos A and B the same person (or A and an enrolled person)?",
    )
    verify.add_argument("a", metavar="A", help="a photo")
    verify.add_argument("b", metavar="B", nargs="?", help="the other photo")
    verify.add_argument("--person", metavar="ID", help="compare A with this enrolled person instead of B")
    verify.add_argument("--threshold", type=float, metavar="T", help="similarity for 'same person' (default 0.30)")
    _json_option(verify)


def _add_detect(commands: Any, command: CommandAdder) -> None:
    """`faceapi detect PHOTO...`: faces without a gallery."""
    detect = command(
        commands,
        "detect",
        cmd_detect,
        "find the faces in photos: boxes, pose and quality (no gallery)",
        "Detect every face in each PHOTO: its box, keypoints, head pose (yaw/pitch/roll in degrees) and\n"
        "quality for recognition (high, medium, low); --json prints every field, --landmarks adds 106 points.",
    )
    detect.add_argument("photos", nargs="+", metavar="PHOTO", help="JPEG, PNG or WebP photos")
    detect.add_argument("--max-faces", type=int, metavar="N", help="faces per photo, largest first (default 20)")
    detect.add_argument("--landmarks", action="store_true", help="add each face's 106-point landmarks (with --json)")
    _json_option(detect)


def _add_search(commands: Any, command: CommandAdder) -> None:
    """`faceapi search FACE_ID`: a stored face against a gallery."""
    search = command(
        commands,
        "search",
        cmd_search,
        "who does a stored face look like? (no photo sent)",
        "Search a gallery (by default the face's own) with an enrolled face, by its id (`faceapi persons\n"
        "faces ID` lists them): the persons it matches, best first. The face itself is left out.",
    )
    search.add_argument("face_id", metavar="FACE_ID", help="the stored face's id")
    search.add_argument("--gallery", metavar="NAME", help="the gallery to search (default: the face's own)")
    search.add_argument("--top-k", type=int, metavar="K", help="persons to answer (default 5)")
    search.add_argument(
        "--threshold", type=float, metavar="T", help="similarity a match needs (default: the gallery's)"
    )
    _json_option(search)


def _add_persons(commands: Any, command: CommandAdder) -> None:
    """`faceapi persons ACTION`: list, show, add, merge, delete persons and their faces."""
    persons = command(commands, "persons", None, "list (the default), show or delete persons and their faces")
    persons_commands = _actions(persons, "persons")
    listing = command(persons_commands, "list", cmd_persons_list, "the persons of a gallery")
    listing.add_argument("--gallery", default="default", metavar="NAME", help="the gallery (default: default)")
    listing.add_argument("--external-id", metavar="ID", help="only the person with this external_id")
    listing.add_argument(
        "-q", "--q", metavar="TEXT", help="only persons whose name or external_id contains TEXT (any case)"
    )
    _json_option(listing)
    show = command(persons_commands, "show", cmd_persons_show, "a person with its faces and consent record")
    show.add_argument("id", metavar="ID", help="the person's id")
    _json_option(show)
    faces = command(persons_commands, "faces", cmd_persons_faces, "a person's enrolled faces")
    faces.add_argument("id", metavar="ID", help="the person's id")
    _json_option(faces)
    delete = command(persons_commands, "delete", cmd_persons_delete, "delete a person and every embedding of it")
    delete.add_argument("id", metavar="ID", help="the person's id")
    remove_face = command(
        persons_commands, "remove-face", cmd_persons_remove_face, "remove one face of a person (a wrong photo)"
    )
    remove_face.add_argument("id", metavar="ID", help="the person's id")
    remove_face.add_argument("face_id", metavar="FACE_ID", help="the face's id (see `faceapi persons faces ID`)")
    target_help = "x,y,w,h of the face to enroll in a photo with several (a refusal lists them)"
    add = command(persons_commands, "add", cmd_persons_add, "enroll a person from one photo (consent given)")
    add.add_argument("photo", metavar="PHOTO", help="JPEG, PNG or WebP photo")
    add.add_argument("--name", required=True, help="the person's name")
    add.add_argument("--gallery", default="default", metavar="NAME", help="the gallery (default: default)")
    add.add_argument("--external-id", metavar="ID", help="your own id for the person")
    add.add_argument("--target-face", metavar="X,Y,W,H", help=target_help)
    add.add_argument("--force", action="store_true", help="enroll even a face another person has (audited)")
    _json_option(add)
    add_face = command(persons_commands, "add-face", cmd_persons_add_face, "add another photo of a person")
    add_face.add_argument("id", metavar="ID", help="the person's id")
    add_face.add_argument("photo", metavar="PHOTO", help="JPEG, PNG or WebP photo")
    add_face.add_argument("--target-face", metavar="X,Y,W,H", help=target_help)
    add_face.add_argument("--force", action="store_true", help="enroll even a face unlike the person's (audited)")
    _json_option(add_face)
    merge = command(persons_commands, "merge", cmd_persons_merge, "merge a person enrolled twice into the other")
    merge.add_argument("id", metavar="ID", help="the person to merge (deleted once its faces moved)")
    merge.add_argument("--into", required=True, metavar="ID", help="the person of the same gallery that keeps them")
    move_face = command(persons_commands, "move-face", cmd_persons_move_face, "give one face to another person")
    move_face.add_argument("id", metavar="ID", help="the person's id")
    move_face.add_argument("face_id", metavar="FACE_ID", help="the face's id (see `faceapi persons faces ID`)")
    move_face.add_argument("--to", required=True, metavar="ID", help="the person of the same gallery to give it to")
    crop = command(persons_commands, "crop", cmd_persons_crop, "save a face's aligned crop (JPEG)")
    crop.add_argument("id", metavar="ID", help="the person's id")
    crop.add_argument("face_id", metavar="FACE_ID", help="the face's id")
    crop.add_argument("-o", "--output", required=True, metavar="OUT.jpg", help="where to write it")


def _add_galleries(commands: Any, command: CommandAdder) -> None:
    """`faceapi galleries ACTION`: list, create, delete (export, import, re-embed: cli_galleries.py)."""
    galleries = command(
        commands, "galleries", None, "list (the default), create, delete, export, import or re-embed galleries"
    )
    gallery_commands = _actions(galleries, "galleries")
    _json_option(command(gallery_commands, "list", cmd_galleries_list, "your galleries"))
    create = command(gallery_commands, "create", cmd_galleries_create, "create a gallery")
    create.add_argument("name", metavar="NAME", help="letters, digits, '_', '.' and '-'; case-sensitive")
    create.add_argument(
        "--threshold", type=float, metavar="T", help="a fixed recognition threshold (default: derived from its size)"
    )
    _json_option(create)
    drop = command(gallery_commands, "delete", cmd_galleries_delete, "delete a gallery with its persons and faces")
    drop.add_argument("name", metavar="NAME", help="the gallery's name")
    from faceapi_client import cli_galleries  # its commands use this module's helpers

    cli_galleries.add_commands(gallery_commands, command)


def _add_jobs(commands: Any, command: CommandAdder) -> None:
    """`faceapi jobs ACTION`: list and show jobs."""
    jobs = command(commands, "jobs", None, "list (the default) or show jobs")
    job_commands = _actions(jobs, "jobs")
    job_list = command(job_commands, "list", cmd_jobs_list, "your jobs, newest first")
    job_list.add_argument("--status", choices=["queued", "running", "succeeded", "failed"], help="only this status")
    job_list.add_argument("--type", choices=["enroll", "recognize", "verify"], help="only this type")
    job_list.add_argument("--limit", type=int, default=50, metavar="N", help="at most N jobs (default 50, at most 200)")
    _json_option(job_list)
    job_show = command(job_commands, "show", cmd_jobs_show, "a job with its result or error")
    job_show.add_argument("id", metavar="ID", help="the job's id")
    job_show.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait up to this long for it to end")
    _json_option(job_show)


def _add_keys(commands: Any, command: CommandAdder) -> None:
    """`faceapi keys ACTION`: create, list and revoke API keys."""
    keys = command(commands, "keys", None, "list (the default), create or revoke API keys")
    key_commands = _actions(keys, "keys")
    key_create = command(
        key_commands,
        "create",
        cmd_keys_create,
        "create an API key (printed once, on stdout)",
        "Create an API key for your organisation. The key (fk_...) is printed once, alone on stdout:\n"
        "KEY=$(faceapi keys create ci --role operator)",
    )
    key_create.add_argument("name", metavar="NAME", help="what the key is for")
    key_create.add_argument(
        "--role",
        default="operator",
        choices=["admin", "operator", "user"],
        help="the key's role, at most your own (default operator)",
    )
    key_create.add_argument(
        "--gallery", action="append", metavar="NAME", help="limit the key to this gallery (repeat for several)"
    )
    key_create.add_argument("--expires-at", metavar="ISO-8601", help="e.g. 2030-01-01T00:00:00Z (default: never)")
    _json_option(key_create)
    _json_option(command(key_commands, "list", cmd_keys_list, "your organisation's API keys"))
    key_revoke = command(key_commands, "revoke", cmd_keys_revoke, "revoke an API key")
    key_revoke.add_argument("id", metavar="ID", help="the key's id (see `faceapi keys list`)")


def build_parser() -> Parser:
    common = _common()
    parser = Parser(
        prog="faceapi",
        description="Command line for the face recognition service: enroll folders of photos, recognize, "
        "verify, and manage persons, galleries, jobs and API keys.",
        epilog=ENVIRONMENT + "\n" + EXIT_CODES,
        formatter_class=_formatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"faceapi {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, help="`faceapi COMMAND --help` for its options"
    )
    commands.required = True

    def command(container, name: str, func: Callable, help_text: str, description: str | None = None):
        sub = container.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            epilog=EXIT_CODES,
            formatter_class=_formatter,
            parents=[common],
        )
        sub.set_defaults(func=func)
        return sub

    _add_enroll(commands, command)
    _add_recognize(commands, command)
    _add_verify(commands, command)
    _add_detect(commands, command)
    _add_search(commands, command)
    _add_persons(commands, command)
    _add_galleries(commands, command)
    _add_jobs(commands, command)
    _add_keys(commands, command)
    _json_option(command(commands, "whoami", cmd_whoami, "the account (or key) you are calling as"))
    from faceapi_client import cli_unknowns  # its commands use this module's helpers

    cli_unknowns.add_commands(commands, command)
    return parser


# --- errors as one line -----------------------------------------------------------------------------------------

_HINTS = {
    "invalid_credentials": "check FACEAPI_EMAIL / FACEAPI_PASSWORD",
    "token_invalid": "the token is not valid: log in again",
    "token_malformed": "the bearer is not a token: check FACEAPI_API_KEY, or log in with FACEAPI_EMAIL",
    "refresh_token_not_accepted": "a refresh token was sent as the access token",
    "password_login_required": "this needs a password login: set FACEAPI_EMAIL (and unset FACEAPI_API_KEY)",
    "gallery_not_found": "name one with --gallery NAME (`faceapi galleries` lists yours)",
    "api_key_invalid": "check FACEAPI_API_KEY (unknown, revoked or expired keys are refused)",
    "token_revoked": "the API key or token was revoked: create a new one",
    "token_expired": "the API key or token has expired: create a new one or log in again",
    "unauthorized": "no credentials were accepted",
    "connection_error": "is the service running? check FACEAPI_URL",
    "timeout": "the service is slow or unreachable; try again, or raise --timeout",
}


def _one_line(error: errors.FaceAPIError) -> str:
    message = " ".join(str(error.message).split()) or error.code
    line = f"faceapi: error: {message} ({error.code})"
    if error.code in _HINTS:
        line += f"; {_HINTS[error.code]}"
    if getattr(error, "details", {}).get("person_id"):
        line += f" [person_id {error.details['person_id']}]"
    return line


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, errors.AuthenticationError | errors.PermissionDenied):
        return EXIT_AUTH
    if isinstance(error, errors.TransportError | errors.ServerError | errors.RateLimited | errors.WaitTimeout):
        return EXIT_UNAVAILABLE
    if isinstance(error, errors.JobFailed):
        return EXIT_FAILED_ITEMS
    if isinstance(error, errors.APIError):
        return EXIT_REFUSED
    return EXIT_FAILED_ITEMS


# A group of commands run without its action lists: `faceapi galleries` is `faceapi galleries list`.
LISTING_GROUPS = ("persons", "galleries", "jobs", "keys")
# Connection options that take a value in the next word (`--url URL`), so that word is no command.
_VALUED_OPTIONS = ("--url", "--api-key", "--email", "--password", "--timeout")


def with_default_action(argv: Sequence[str]) -> list[str]:
    """`argv` with `list` after a listing group that names no action (options may follow)."""
    words = list(argv)
    index = 0
    while index < len(words):
        word = words[index]
        if word in _VALUED_OPTIONS:
            index += 2
            continue
        if word.startswith("-"):
            index += 1
            continue
        following = words[index + 1] if index + 1 < len(words) else None
        no_action = following is None or (following.startswith("-") and following not in ("-h", "--help"))
        if word in LISTING_GROUPS and no_action:
            words.insert(index + 1, "list")
        break
    return words


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(with_default_action(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except UsageError as error:
        print(f"faceapi {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except errors.FaceAPIError as error:
        print(_one_line(error), file=sys.stderr)
        return exit_code_of(error)
    except KeyboardInterrupt:
        print("faceapi: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # the reader (| head) went away
        return EXIT_OK
    except OSError as error:
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        print(f"faceapi {args.command}: error:{where} {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""Enroll a folder tree (one sub-folder per person) through the API, resumably.

    python -m client.enroll PHOTOS_DIR --api http://127.0.0.1:8000 --email E [--password P]
                            [--gallery default] [--report FILE] [--chunk 20]

Each sub-folder is a person (its name is the person's name and external_id, so reruns add to
the same person). Photos go up in batches through POST /api/v1/enrollments, each with an
Idempotency-Key derived from its content, so a batch re-sent after a crash is not enrolled
twice. The report (JSON, default PHOTOS_DIR/enroll-report.json) records every photo's outcome;
a rerun skips the photos already enrolled. The password may come from FACEAPI_PASSWORD.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def find_photos(root: Path) -> list[Path]:
    return sorted(
        path
        for folder in root.iterdir()
        if folder.is_dir()
        for path in folder.iterdir()
        if path.suffix.lower() in PHOTO_SUFFIXES
    )


def load_report(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_report(path: Path, report: dict[str, dict]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=True))
    temporary.replace(path)  # never a half-written report


def idempotency_key(root: Path, chunk: list[Path], gallery: str) -> str:
    """The same photos into the same gallery: the same key (the server refuses a key reused for
    another request, so everything the request carries is in it)."""
    digest = hashlib.sha256(gallery.encode() + b"\x00")
    for path in chunk:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "enroll-" + digest.hexdigest()[:40]


class Api:
    def __init__(self, base: str, email: str, password: str):
        self.base = base.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        response = self.session.post(f"{self.base}/auth/login", json={"email": email, "password": password}, timeout=30)
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def submit(self, root: Path, chunk: list[Path], gallery: str) -> str:
        manifest = [
            {"file": str(path.relative_to(root)), "name": path.parent.name, "external_id": path.parent.name}
            for path in chunk
        ]
        files = [("images", (str(path.relative_to(root)), path.read_bytes())) for path in chunk]
        response = self.session.post(
            f"{self.base}/enrollments",
            data={"consent": "true", "gallery": gallery, "manifest": json.dumps(manifest)},
            files=files,
            headers={"Idempotency-Key": idempotency_key(root, chunk, gallery)},
            timeout=300,
        )
        response.raise_for_status()
        return response.json()["batch_id"]

    def wait(self, batch_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            batch = self.session.get(f"{self.base}/enrollments/{batch_id}", timeout=30).json()
            if batch["status"] in ("succeeded", "partial", "failed") or time.monotonic() > deadline:
                return batch
            time.sleep(0.5)


def run(root: Path, api: Api, gallery: str, report_path: Path, chunk_size: int) -> dict[str, dict]:
    report = load_report(report_path)
    pending = [p for p in find_photos(root) if report.get(str(p.relative_to(root)), {}).get("status") != "succeeded"]
    with tqdm(total=len(pending), unit="photo", desc="enrolling") as progress:
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start : start + chunk_size]
            batch = api.wait(api.submit(root, chunk, gallery))
            for item in batch["items"]:
                report[item["file"]] = {
                    "status": item["status"],
                    "person_id": item["person_id"],
                    "job_id": item["job_id"],
                    "error": item["error"],
                }
            save_report(report_path, report)  # after every batch: a rerun resumes from here
            progress.update(len(chunk))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.enroll", description=__doc__.split("\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", default=os.environ.get("FACEAPI_PASSWORD"))
    parser.add_argument("--gallery", default="default")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--chunk", type=int, default=20)
    args = parser.parse_args(argv)
    password = args.password or getpass.getpass("Password: ")
    report_path = args.report or args.photos / "enroll-report.json"
    report = run(args.photos, Api(args.api, args.email, password), args.gallery, report_path, args.chunk)
    failed = {name: entry["error"] for name, entry in report.items() if entry["status"] != "succeeded"}
    print(f"{len(report) - len(failed)} enrolled, {len(failed)} failed; report: {report_path}")
    for name, error in sorted(failed.items()):
        print(f"  {name}: {(error or {}).get('code')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile input and faults: every answer is a 4xx or 503 JSON, never a 500, and
nothing a hostile client sends costs unbounded time or memory."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import jwt as pyjwt
import pytest
import requests
from flask_jwt_extended import create_access_token

from config import get_settings
from domain.db import session_scope
from domain.jobs import now
from domain.models import Person
from tests.conftest import (
    ROOT,
    bearer,
    free_port,
    gallery_of,
    login,
    make_account,
    override_settings,
    stop_process,
    wait_until_ready,
)

PASSWORD = "correct horse battery"  # make_account's


def _me(client, headers) -> dict:
    return client.get("/api/v1/auth/me", headers=headers).get_json()


def _error(response) -> str:
    body = response.get_json()
    assert body is not None, response.get_data()[:500]
    return body["error"]["code"]


# --- accounts and tokens (item 13) ---------------------------------------------------------------


def test_login_failures_are_counted_per_email_and_client_address(client, services):
    email, password = make_account("user")
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    with override_settings(RATELIMIT_LOGIN="3/minute"):
        for _ in range(3):
            wrong = client.post(
                "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}, environ_base=attacker
            )
            assert wrong.status_code == 401
        limited = client.post("/api/v1/auth/login", json={"email": email, "password": password}, environ_base=attacker)
        assert limited.status_code == 429
        # The owner, from its own address, is not locked out by somebody else's guesses.
        owner = client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": "192.0.2.9"}
        )
        assert owner.status_code == 200, owner.get_json()


def test_logout_also_revokes_the_refresh_token_of_the_same_login(client, services):
    email, password = make_account("user")
    tokens = login(client, email, password)
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 401 and _error(refreshed) == "token_revoked"
    # An access token from a refresh names the same login: its logout revokes that refresh token too.
    second = login(client, email, password)
    access = client.post("/api/v1/auth/refresh", headers=bearer(second["refresh_token"])).get_json()["access_token"]
    assert client.post("/api/v1/auth/logout", headers=bearer(access)).status_code == 204
    assert client.post("/api/v1/auth/refresh", headers=bearer(second["refresh_token"])).status_code == 401
    # Another login's tokens are untouched.
    third = login(client, email, password)
    assert client.get("/api/v1/auth/me", headers=bearer(third["access_token"])).status_code == 200


def test_erasing_oneself_takes_the_current_password(client, services):
    email, password = make_account("operator")
    headers = bearer(login(client, email, password)["access_token"])
    assert client.delete("/api/v1/auth/me", headers=headers).status_code == 400
    wrong = client.delete("/api/v1/auth/me", headers=headers, json={"password": "not the password"})
    assert wrong.status_code == 401 and _error(wrong) == "invalid_credentials"
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/me", headers=headers, json={"password": password}).status_code == 204
    assert client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code == 401


def test_tokens_without_expiry_or_id_are_refused(client, app, services):
    headers = bearer(login(client, *make_account("admin"))["access_token"])
    account_id = _me(client, headers)["id"]
    with app.app_context():
        forever = create_access_token(identity=account_id, expires_delta=False)
    issued = int(time.time())
    claims = {"sub": account_id, "type": "access", "fresh": False, "iat": issued, "nbf": issued, "exp": issued + 600}
    secret = get_settings().jwt_secret_key
    no_id = pyjwt.encode(claims, secret, algorithm="HS256")
    no_issued_at = pyjwt.encode({**claims, "jti": str(uuid.uuid4()), "iat": None}, secret, algorithm="HS256")
    for token in (forever, no_id, no_issued_at):
        response = client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, response.get_json()
        assert _error(response) == "token_invalid"
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200


def test_the_last_admin_cannot_demote_or_delete_itself(client, services):
    admin_email, _ = make_account("admin")
    admin = bearer(login(client, admin_email, PASSWORD)["access_token"])
    admin_id = _me(client, admin)["id"]
    make_account("operator", colleague_of=admin_email)
    demoted = client.patch(f"/api/v1/accounts/{admin_id}", headers=admin, json={"role": "operator"})
    assert demoted.status_code == 409 and _error(demoted) == "last_admin"
    assert client.delete(f"/api/v1/accounts/{admin_id}", headers=admin).status_code == 409
    erased = client.delete("/api/v1/auth/me", headers=admin, json={"password": PASSWORD})
    assert erased.status_code == 409 and _error(erased) == "last_admin"
    assert _me(client, admin)["role"] == "admin"
    # With a second admin, either may step down.
    make_account("admin", colleague_of=admin_email)
    assert client.patch(f"/api/v1/accounts/{admin_id}", headers=admin, json={"role": "operator"}).status_code == 200
    # The last account of all may still leave: its organisation goes with it.
    alone = bearer(login(client, *make_account("admin"))["access_token"])
    assert client.delete("/api/v1/auth/me", headers=alone, json={"password": PASSWORD}).status_code == 204


# --- a demoted operator (item 11) ------------------------------------------------------------------


def test_an_operator_demoted_to_user_loses_the_organisations_persons(client, services):
    from tests import images
    from tests.conftest import upload

    operator_email, _ = make_account("operator")
    operator = bearer(login(client, operator_email, PASSWORD)["access_token"])
    admin = bearer(login(client, *make_account("admin", colleague_of=operator_email))["access_token"])
    operator_id = _me(client, operator)["id"]
    with session_scope() as session:
        gallery = gallery_of(session, uuid.UUID(operator_id), "staff")
        person = Person(gallery_id=gallery.id, name="Kept", consent_at=now(), consent_by_id=uuid.UUID(operator_id))
        session.add(person)
        session.flush()
        person_id = str(person.id)
    assert client.get(f"/api/v1/persons/{person_id}", headers=operator).status_code == 200
    assert client.patch(f"/api/v1/accounts/{operator_id}", headers=admin, json={"role": "user"}).status_code == 200
    # The same token, now a user's: the organisation's persons are out of reach.
    assert client.get(f"/api/v1/persons/{person_id}", headers=operator).status_code == 404
    assert client.get(f"/api/v1/persons/{person_id}/faces", headers=operator).status_code == 404
    added = client.post(
        f"/api/v1/persons/{person_id}/faces",
        headers=operator,
        data={"image": upload(images.tom_hanks())},
        content_type="multipart/form-data",
    )
    assert added.status_code == 404
    assert client.delete(f"/api/v1/persons/{person_id}/faces/{uuid.uuid4()}", headers=operator).status_code == 404
    assert client.delete(f"/api/v1/persons/{person_id}", headers=operator).status_code == 404
    assert client.get(f"/api/v1/persons/{person_id}", headers=admin).status_code == 200


def test_expired_tokens_still_say_so(client, app, services):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    with app.app_context():
        expired = create_access_token(identity=_me(client, headers)["id"], expires_delta=timedelta(seconds=-5))
    assert _error(client.get("/api/v1/auth/me", headers=bearer(expired))) == "token_expired"


# --- a real gunicorn with a Redis of its own: Redis down, broken bodies (items 6, 8) ----------------


class WebServer:
    """gunicorn (stack/serve.py's command line) on the session's PostgreSQL and a Redis of its own,
    which a test may stop and start again."""

    def __init__(self, directory: Path):
        from stack.embedded import start_redis
        from stack.serve import command

        self.directory = directory
        self.redis_port = free_port()
        self.redis, self.redis_url = start_redis(directory, self.redis_port)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "REDIS_URL": self.redis_url, "PORT": str(self.port), "WEB_WORKERS": "1"}
        env["DATA_DIR"] = str(directory)
        self.log = (directory / "web.log").open("ab")
        self.process = subprocess.Popen(command("web"), cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_ready(self.base, directory / "web.log", process=self.process)

    def stop_redis(self) -> None:
        self.redis.terminate()
        self.redis.wait(15)

    def start_redis(self) -> None:
        from stack.embedded import start_redis

        self.redis, _ = start_redis(self.directory, self.redis_port)

    def close(self) -> None:
        stop_process(self.process)
        if self.redis.poll() is None:
            self.stop_redis()
        self.log.close()

    def raw(self, head: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send bytes as they are (no client fixes them up) and read the answer: (status, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def web_server(services, tmp_path_factory):
    server = WebServer(tmp_path_factory.mktemp("hostile-web"))
    yield server
    server.close()


def _api_key(base: str, headers: dict) -> str:
    created = requests.post(
        f"{base}/api/v1/api-keys", headers=headers, json={"name": "ci", "role": "operator"}, timeout=30
    )
    assert created.status_code == 201, created.text
    return created.json()["key"]


def test_redis_down_answers_503_with_retry_after_and_recovers(web_server):
    from tests import images

    base = web_server.base
    email, _ = make_account("admin")
    tokens = requests.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert tokens.status_code == 200, tokens.text
    headers = bearer(tokens.json()["access_token"])
    key = {"X-API-Key": _api_key(base, headers)}
    photo = images.tom_hanks()
    web_server.stop_redis()
    try:
        answers = {
            "login": requests.post(
                f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
            ),
            "me": requests.get(f"{base}/api/v1/auth/me", headers=headers, timeout=30),  # the denylist fails closed
            "logout": requests.post(f"{base}/api/v1/auth/logout", headers=headers, timeout=30),
            "recognize": requests.post(
                f"{base}/api/v1/recognize", headers=headers, files={"image": ("a.jpg", photo)}, timeout=30
            ),
            "enroll by key": requests.post(
                f"{base}/api/v1/persons",
                headers=key,
                data={"name": "Tom", "consent": "true"},
                files={"image": ("a.jpg", photo)},
                timeout=30,
            ),
        }
        for name, response in answers.items():
            assert response.status_code == 503, (name, response.status_code, response.text)
            assert int(response.headers["Retry-After"]) > 0, name
            assert response.elapsed.total_seconds() < 3, (name, response.elapsed)
        codes = {name: response.json()["error"]["code"] for name, response in answers.items()}
        assert codes["recognize"] == codes["enroll by key"] == "queue_unavailable", codes
        assert codes["login"] == codes["me"] == "service_unavailable", codes
        # The enrollment refused by the queue left nothing behind.
        listed = requests.get(f"{base}/api/v1/persons", headers=key, timeout=30)
        assert listed.status_code == 404 and listed.json()["error"]["code"] == "gallery_not_found", listed.text
    finally:
        web_server.start_redis()
    again = requests.get(f"{base}/api/v1/auth/me", headers=headers, timeout=30)
    assert again.status_code == 200, again.text


def test_broken_and_oversized_chunked_bodies_answer_400_and_413(web_server):
    head = "POST /api/v1/auth/login HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\n"
    for broken in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b'ffff\r\n{"email"'):
        status, body = web_server.raw(head, broken)
        assert status == 400, (broken, status, body[:300])
        assert json.loads(body)["error"]["code"] == "malformed_body"
    # The 64 KiB JSON limit holds without a Content-Length too.
    document = json.dumps({"email": "a@example.com", "password": "x" * 100_000}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (document[:50_000], document[50_000:]))
    status, body = web_server.raw(head, chunked + b"0\r\n\r\n")
    assert status == 413, (status, body[:300])
    assert json.loads(body)["error"]["code"] == "request_too_large"
    # A broken multipart body too, once the caller is known.
    email, _ = make_account("operator")
    token = requests.post(
        f"{web_server.base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30
    ).json()["access_token"]
    multipart = (
        "POST /api/v1/recognize HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
        f"Authorization: Bearer {token}\nContent-Type: multipart/form-data; boundary=b\n"
    )
    status, body = web_server.raw(multipart, b"10\r\n--b\r\nContent-Disposition\r\nnot hex\r\n")
    assert status == 400, (status, body[:300])
    assert json.loads(body)["error"]["code"] == "malformed_body"


def test_deeply_nested_json_is_invalid_json_and_still_counted(client, services):
    email, _ = make_account("operator")
    nested = b"[" * 60_000
    with override_settings(RATELIMIT_LOGIN="2/minute"):
        statuses = []
        for _ in range(3):
            response = client.post(
                "/api/v1/auth/login",
                data=nested,
                content_type="application/json",
                environ_base={"REMOTE_ADDR": "203.0.113.5"},
            )
            statuses.append(response.status_code)
            assert response.get_json()["error"]["code"] in ("invalid_json", "rate_limited")
        assert statuses == [400, 400, 429]
    headers = bearer(login(client, email, PASSWORD)["access_token"])
    for path, method in (("/api/v1/galleries", "post"), ("/api/v1/auth/password", "post")):
        response = getattr(client, method)(
            path, data=b'{"a":' * 12_000, content_type="application/json", headers=headers
        )
        assert response.status_code == 400, response.get_data()[:300]
        assert response.get_json()["error"]["code"] == "invalid_json"


# --- batch input: ZIP archives and manifests (items 7, 8, 9) --------------------------------------


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _headers_of(archive: bytes, name: str) -> tuple[int, int]:
    """The offsets of a member's local header and of its central directory record."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    central = archive.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", archive, central + 28)[0]
        if archive[central + 46 : central + 46 + name_length] == name.encode():
            return info.header_offset, central
        central = archive.find(b"PK\x01\x02", central + 46)
    raise AssertionError(name)


def _patched(archive: bytes, name: str, *, flags: int | None = None, method: int | None = None) -> bytes:
    """The archive with a member's flag bits or compression method changed in both of its headers."""
    data = bytearray(archive)
    local, central = _headers_of(archive, name)
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    return bytes(data)


def _corrupted(archive: bytes, name: str, at: float = 0.5) -> bytes:
    """The archive with bytes inside a member's stored or compressed data flipped."""
    data = bytearray(archive)
    local, _ = _headers_of(archive, name)
    name_length, extra_length = struct.unpack_from("<HH", archive, local + 26)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    start = local + 30 + name_length + extra_length + int(info.compress_size * at)
    for offset in range(start, start + 8):
        data[offset] ^= 0xA5
    return bytes(data)


def _items(client, headers, archive: bytes) -> dict[str, dict]:
    from tests.conftest import submit_batch, upload

    response = submit_batch(client, headers, {"archive": upload(archive, "photos.zip")})
    assert response.status_code == 202, response.get_json()
    batch = client.get(f"/api/v1/enrollments/{response.get_json()['batch_id']}", headers=headers).get_json()
    return {item["file"]: item for item in batch["items"]}


def _code(item: dict) -> str | None:
    return (item["error"] or {}).get("code")


def test_broken_zip_members_fail_alone_and_good_ones_are_kept(client, operator_headers):
    from tests import images

    tom = images.tom_hanks()
    stored = {"Ann/good.jpg": tom, "Ann/crc.jpg": tom, "Ann/locked.jpg": tom, "Ann/method.jpg": tom}
    archive = _zip({**stored, "Ann/deflate.jpg": tom, "Ann/good2.jpg": tom}, method=zipfile.ZIP_DEFLATED)
    archive = _corrupted(archive, "Ann/deflate.jpg", at=0.2)
    stored_archive = _zip(stored, method=zipfile.ZIP_STORED)
    stored_archive = _corrupted(stored_archive, "Ann/crc.jpg")  # stored: only the CRC can tell
    stored_archive = _patched(stored_archive, "Ann/locked.jpg", flags=0x1)
    stored_archive = _patched(stored_archive, "Ann/method.jpg", method=99)  # AES, or anything unknown
    items = {**_items(client, operator_headers, archive), **_items(client, operator_headers, stored_archive)}
    codes = {file: _code(item) for file, item in items.items()}
    assert codes == {
        "Ann/good.jpg": None,
        "Ann/good2.jpg": None,
        "Ann/deflate.jpg": "corrupt_member",
        "Ann/crc.jpg": "corrupt_member",
        "Ann/locked.jpg": "encrypted_member",
        "Ann/method.jpg": "unsupported_compression",
    }, codes
    assert items["Ann/good.jpg"]["status"] in ("queued", "running", "succeeded")


def test_zip_entry_names_follow_the_single_photo_rules(client, operator_headers):
    from tests import images

    tom = images.tom_hanks()
    archive = _zip(
        {
            "   /blank.jpg": tom,
            "\x1b[31mRed/ansi.jpg": tom,
            "Two\nLines/newline.jpg": tom,
            "\u202eevil/bidi.jpg": tom,
            f"{'L' * 201}/long.jpg": tom,
            "  Fine Name /ok.jpg": tom,
        }
    )
    items = {file.rsplit("/", 1)[-1]: item for file, item in _items(client, operator_headers, archive).items()}
    assert _code(items["blank.jpg"]) == "missing_field"
    for file in ("ansi.jpg", "newline.jpg", "bidi.jpg", "long.jpg"):
        assert _code(items[file]) == "invalid_field", items[file]
        assert items[file]["person_id"] is None
    assert _code(items["ok.jpg"]) is None and items["ok.jpg"]["name"] == "Fine Name"


def test_manifest_values_follow_the_single_photo_rules(client, operator_headers):
    from tests import images
    from tests.conftest import submit_batch, upload

    tom = images.tom_hanks()

    def send(manifest, files=("a.jpg",)):
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        parts = [upload(tom, file) for file in files]
        return submit_batch(client, operator_headers, {"manifest": text, "images": parts})

    for external_id in ({"a": 1}, ["x"], 7, 1.5, True):
        response = send([{"file": "a.jpg", "name": "A", "external_id": external_id}])
        assert response.status_code == 400, (external_id, response.get_data()[:300])
        assert response.get_json()["error"]["code"] == "invalid_manifest"
    for nested in ("[" * 50_000, '[{"file": "a.jpg", "name": "A", "x": ' + "[" * 50_000):
        response = send(nested)
        assert response.status_code == 400, response.get_data()[:300]
        assert response.get_json()["error"]["code"] == "invalid_manifest"
    response = send(
        [
            {"file": "a.jpg", "name": "Ann\x1b[2J"},
            {"file": "b.jpg", "name": "Bob", "external_id": "id\n2"},
            {"file": "c.jpg", "name": "Cy", "external_id": "  "},
        ],
        files=("a.jpg", "b.jpg", "c.jpg"),
    )
    assert response.status_code == 202, response.get_json()
    batch = client.get(f"/api/v1/enrollments/{response.get_json()['batch_id']}", headers=operator_headers).get_json()
    items = {item["file"]: item for item in batch["items"]}
    assert _code(items["a.jpg"]) == _code(items["b.jpg"]) == "invalid_field"
    assert _code(items["c.jpg"]) is None and items["c.jpg"]["external_id"] is None


def _with_duplicated_record(archive: bytes, name: str, copies: int, new_name: bytes = b"") -> bytes:
    """The archive with `copies` more central directory records pointing at `name`'s local header
    (each renamed with a suffix, the same length): an overlapping-member zip bomb."""
    _, central = _headers_of(archive, name)
    eocd = archive.rfind(b"PK\x05\x06")
    name_length, extra_length, comment_length = struct.unpack_from("<HHH", archive, central + 28)
    record = archive[central : central + 46 + name_length + extra_length + comment_length]
    extra_records = b""
    for index in range(copies):
        renamed = bytearray(record)
        suffix = (new_name or b"%05d" % index)[:5]
        renamed[46 + name_length - 5 : 46 + name_length] = suffix
        extra_records += bytes(renamed)
    (entries,) = struct.unpack_from("<H", archive, eocd + 10)
    size, offset = struct.unpack_from("<LL", archive, eocd + 12)
    tail = bytearray(archive[eocd:])
    struct.pack_into("<HHLL", tail, 8, entries + copies, entries + copies, size + len(extra_records), offset)
    return archive[:eocd] + extra_records + bytes(tail)


def test_overlapping_members_and_huge_directories_refuse_the_archive(client, operator_headers):
    from tests import images
    from tests.conftest import submit_batch, upload

    def send(archive):
        return submit_batch(client, operator_headers, {"archive": upload(archive, "photos.zip")})

    base = _zip({"Ann/photo.jpg": images.tom_hanks(), "Bob/photo.jpg": images.tom_hanks()})
    overlapping = _with_duplicated_record(base, "Ann/photo.jpg", 3)
    assert len(zipfile.ZipFile(io.BytesIO(overlapping)).infolist()) == 5
    response = send(overlapping)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_archive"
    assert "overlap" in response.get_json()["error"]["message"]

    # 30,000 empty entries: refused from the end-of-central-directory record, before any parsing.
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as archive:
        for index in range(30_000):
            archive.writestr(f"A/{index}.jpg", b"")
    started = time.monotonic()
    response = send(many.getvalue())
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_archive"
    assert "entries" in response.get_json()["error"]["message"]
    assert time.monotonic() - started < 5
    # ...and a directory whose record claims one entry but holds thousands is refused by its size.
    lying = bytearray(many.getvalue())
    eocd = lying.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", lying, eocd + 8, 1, 1)
    response = send(bytes(lying))
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_archive"


def test_a_zip_may_not_decompress_to_more_than_max_batch_bytes(client, operator_headers):
    from tests.conftest import submit_batch, upload

    compressible = [b"\xff\xd8\xff" + os.urandom(60_000).hex().encode() for _ in range(5)]  # ~2:1 each
    archive = _zip({f"P{i}/photo.jpg": data for i, data in enumerate(compressible)})
    assert len(archive) < 400_000 < sum(map(len, compressible))
    with override_settings(MAX_BATCH_BYTES="400000"):
        response = submit_batch(client, operator_headers, {"archive": upload(archive, "photos.zip")})
    assert response.status_code == 413, response.get_json()
    assert response.get_json()["error"]["code"] == "request_too_large"


# --- images whose decoding costs more than their pixels say (item 9) -------------------------------


def _png(width: int, height: int, depth: int, colour_type: int, samples: int) -> bytes:
    """A PNG of zeros written by hand (Pillow cannot write 16-bit colour): tiny, however large."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + width * samples * depth // 8)
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_images_that_decode_to_too_many_bytes_are_refused_before_decoding(client, operator_headers):
    from tests.conftest import upload

    for depth, colour_type, samples in ((16, 2, 3), (16, 6, 4), (8, 6, 4)):
        photo = _png(6500, 5000, depth, colour_type, samples)  # 32.5 Mpx: under MAX_IMAGE_PIXELS
        assert len(photo) < 400_000
        started = time.monotonic()
        response = client.post(
            "/api/v1/recognize",
            data={"image": upload(photo, "big.png")},
            headers=operator_headers,
            content_type="multipart/form-data",
        )
        assert response.status_code == 400, (depth, colour_type, response.get_json())
        assert response.get_json()["error"]["code"] == "image_too_large"
        assert time.monotonic() - started < 2, "refused from the header, before decoding"


def test_a_16_bit_photo_converts_without_a_float_copy():
    import tracemalloc

    from domain.images import decode, validate_image

    photo = _png(2000, 2000, 16, 0, 1)  # 4 Mpx of 16-bit grey: 8 MB decoded
    validate_image(photo, settings=get_settings())
    tracemalloc.start()
    decoded = decode(photo)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert decoded.bgr.shape == (2000, 2000, 3)
    assert peak < 60_000_000, peak  # the float64 copy, its scaled and its clipped copies took 96 MB


# --- webhooks: the SSRF guard and bounded deliveries (items 1, 10) ---------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://100.100.100.200/latest/meta-data",  # Alibaba Cloud's metadata, in shared 100.64.0.0/10
        "http://100.64.0.1/hook",
        "http://192.88.99.1/hook",  # the 6to4 relay anycast
        "http://192.0.0.170/hook",
        "http://198.18.0.1/hook",
        "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[::ffff:169.254.169.254]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
        "http://[fd00::1]/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://127.0.0.1:99999/hook",
    ],
)
def test_addresses_that_are_not_globally_routable_are_refused(url):
    from domain.errors import ServiceError
    from domain.webhooks import check_url

    with override_settings(WEBHOOK_ALLOWED_HOSTS=""), pytest.raises(ServiceError) as refused:
        check_url(url, settings=get_settings())
    assert refused.value.code == "invalid_webhook_url"


def test_global_addresses_pass_the_guard():
    from domain.webhooks import check_url

    with override_settings(WEBHOOK_ALLOWED_HOSTS=""):
        for url in ("http://8.8.8.8/hook", "https://[2606:4700:4700::1111]/hook", "http://[64:ff9b::808:808]/x"):
            assert check_url(url, settings=get_settings()) == url


def test_allowed_hosts_name_their_ports():
    from domain.errors import ServiceError
    from domain.webhooks import check_url

    def passes(url: str) -> bool:
        try:
            check_url(url, settings=get_settings())
        except ServiceError:
            return False
        return True

    with override_settings(WEBHOOK_ALLOWED_HOSTS="127.0.0.1, 10.0.0.7:8443, [fd00::5]:*"):
        assert passes("http://127.0.0.1/hook") and passes("https://127.0.0.1/hook")
        assert not passes("http://127.0.0.1:6379/hook")  # a bare host: 80 and 443 only
        assert passes("https://10.0.0.7:8443/hook")
        assert not passes("https://10.0.0.7/hook") and not passes("http://10.0.0.7:8444/hook")
        assert passes("http://[fd00::5]:9000/hook")


class RawServer:
    """A TCP server on loopback whose every connection is handed to `handle(socket)` in a thread."""

    def __init__(self, handle):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.handle = handle
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, self.connections), daemon=True).start()

    def _run(self, conn, number):
        with conn, contextlib.suppress(OSError):
            self.handle(conn, number)

    def close(self):
        self.listener.close()


def _read_request(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


def _finished_job_with_webhook(owner_email: str, url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A succeeded job of the account's organisation with a webhook_url; (job id, organisation id)."""
    from sqlalchemy import select

    from domain.models import Account, JobStatus
    from tests.conftest import stored_job

    with session_scope() as session:
        account = session.execute(select(Account).where(Account.email == owner_email)).scalar_one()
        job = stored_job(session, account.id)
        job.status, job.finished_at, job.result, job.webhook_url = JobStatus.succeeded, now(), {}, url
        job.input_image = None
        return job.id, account.organisation_id


class _Task:
    """What deliver() needs of a Celery task: its retry count, and retry() (raised, not queued)."""

    class request:  # noqa: N801 - Celery's attribute name
        retries = 0

    @staticmethod
    def retry(countdown: float) -> Exception:
        return RuntimeError(f"retry in {countdown:.1f}s")


def _deliver(job_id: uuid.UUID, timeout: float = 30) -> tuple[str | None, float]:
    """Run one delivery attempt in a thread: (None, seconds) if it ended, or ('retry...', seconds)."""
    from config import get_settings
    from workers.webhooks import deliver

    outcome: dict = {}
    settings = get_settings()  # those of the block it runs in (override_settings)

    def run():
        try:
            deliver(_Task(), str(job_id), str(uuid.uuid4()), settings=settings)
            outcome["result"] = None
        except RuntimeError as retry:
            outcome["result"] = str(retry)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the delivery attempt still runs after {timeout} s"
    return outcome["result"], time.monotonic() - started


def _deliveries(job_id: uuid.UUID) -> list[dict]:
    from domain.models import Job

    with session_scope() as session:
        return session.get(Job, job_id).deliveries


def test_a_dripping_receiver_is_cut_off_at_the_deadline_and_retried(operator_account):
    def drip(conn, number):
        _read_request(conn)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.4)

    server = RawServer(drip)
    try:
        job_id, _ = _finished_job_with_webhook(operator_account[0], f"http://127.0.0.1:{server.port}/hook")
        with override_settings(WEBHOOK_TIMEOUT_SECONDS="1.5"):
            retried, seconds = _deliver(job_id)
        assert retried and retried.startswith("retry"), retried
        assert seconds < 5, seconds
        assert [(d["status_code"], d["error"]) for d in _deliveries(job_id)] == [(None, "deadline_exceeded")]
    finally:
        server.close()


def test_a_huge_answer_is_not_read(operator_account):
    import tracemalloc

    import workers.webhooks  # noqa: F401 - imported before the measure, as in a worker
    from config import get_settings

    def flood(conn, number):
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n")
        block = b"x" * 65536
        for _ in range(300_000_000 // len(block)):
            conn.sendall(block)

    server = RawServer(flood)
    try:
        job_id, _ = _finished_job_with_webhook(operator_account[0], f"http://127.0.0.1:{server.port}/hook")
        get_settings()  # read before the measure, as a worker reads them at start
        tracemalloc.start()
        result, seconds = _deliver(job_id)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result is None and seconds < 5, (result, seconds)
        assert peak < 5_000_000, peak
        assert [d["status_code"] for d in _deliveries(job_id)] == [200]
    finally:
        server.close()


def test_delivery_connects_to_the_address_it_checked(operator_account, monkeypatch):
    """DNS rebinding: the host answers a public-looking allowed address first, the metadata
    address after. One resolution, and the request goes where it was checked, with its Host."""
    seen = []

    def receive(conn, number):
        seen.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    server = RawServer(receive)
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["127.0.0.1", "169.254.169.254", "169.254.169.254"])
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    try:
        job_id, _ = _finished_job_with_webhook(operator_account[0], f"http://rebind.example:{server.port}/hook?x=1")
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        with override_settings(WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*"):
            result, _ = _deliver(job_id)
        assert result is None, _deliveries(job_id)
        assert lookups == ["rebind.example"]
        assert seen and seen[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
        assert f"\r\nHost: rebind.example:{server.port}\r\n".encode() in seen[0]
    finally:
        server.close()


def test_https_delivery_to_the_checked_address_keeps_sni_and_the_certificate_check(
    operator_account, monkeypatch, tmp_path
):
    import ssl

    from workers import webhooks as delivery

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test"],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    heads = []

    def receive(conn, number):
        with server_context.wrap_socket(conn, server_side=True) as tls:
            heads.append(_read_request(tls))
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = RawServer(receive)
    real_getaddrinfo = socket.getaddrinfo

    def local(host, port, *args, **kwargs):
        if host in ("hooks.test", "other.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    try:
        monkeypatch.setattr(socket, "getaddrinfo", local)
        monkeypatch.setattr(delivery, "tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
        with override_settings(WEBHOOK_ALLOWED_HOSTS="hooks.test:*,other.test:*"):
            good, _ = _finished_job_with_webhook(operator_account[0], f"https://hooks.test:{server.port}/h")
            assert _deliver(good)[0] is None, _deliveries(good)
            # The certificate names hooks.test: another name on the same address fails its check.
            wrong, _ = _finished_job_with_webhook(operator_account[0], f"https://other.test:{server.port}/h")
            assert _deliver(wrong)[0].startswith("retry")
        assert names[0] == "hooks.test"
        assert f"\r\nHost: hooks.test:{server.port}\r\n".encode() in heads[0]
        assert _deliveries(wrong)[0]["error"] == "SSLCertVerificationError"
    finally:
        server.close()


def test_deliveries_go_to_their_own_queue():
    from jobqueue import DELIVER_WEBHOOK, PROCESS_JOB, WEBHOOK_QUEUE, make_app

    celery_app = make_app()  # what the web process sends with
    router = celery_app.amqp.router
    assert router.route({}, DELIVER_WEBHOOK)["queue"].name == WEBHOOK_QUEUE == "webhooks"
    assert router.route({}, PROCESS_JOB)["queue"].name == "faceapi"
    # A worker started without -Q consumes both (make run, the tests); -Q webhooks splits them.
    assert {queue.name for queue in celery_app.amqp.queues.values()} == {"faceapi", "webhooks"}


def test_redeliver_is_limited_to_one_delivery_in_flight(client, operator_headers, operator_account, worker):
    def slow(conn, number):
        _read_request(conn)
        time.sleep(2)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server = RawServer(slow)
    try:
        job_id, _ = _finished_job_with_webhook(operator_account[0], f"http://127.0.0.1:{server.port}/hook")
        address = {"REMOTE_ADDR": "198.51.100.30"}
        with override_settings(RATELIMIT_REDELIVER="10/minute"):
            statuses = [
                client.post(
                    f"/api/v1/jobs/{job_id}/redeliver", headers=operator_headers, environ_base=address
                ).status_code
                for _ in range(30)
            ]
        assert statuses.count(202) == 1, statuses
        assert statuses[:10] == [202] + [409] * 9, statuses  # one in flight at a time
        assert statuses[10:] == [429] * 20, statuses  # RATELIMIT_REDELIVER
        deadline = time.monotonic() + 30
        while not _deliveries(job_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        assert server.connections == 1
        assert [d["status_code"] for d in _deliveries(job_id)] == [200]
        # Once it ended, the job may be sent again.
        assert client.post(f"/api/v1/jobs/{job_id}/redeliver", headers=operator_headers).status_code == 202
    finally:
        server.close()


def test_an_organisation_has_at_most_webhook_max_pending_deliveries(client, operator_headers, operator_account):
    from domain.webhooks import start_delivery

    url = "http://127.0.0.1:9/never"  # nothing has to answer: the deliveries only have to be pending
    jobs = [_finished_job_with_webhook(operator_account[0], url) for _ in range(4)]
    with override_settings(WEBHOOK_MAX_PENDING="2"):
        answers = [client.post(f"/api/v1/jobs/{job_id}/redeliver", headers=operator_headers) for job_id, _ in jobs[:3]]
        assert [answer.status_code for answer in answers] == [202, 202, 429]
        assert answers[2].get_json()["error"]["code"] == "too_many_pending_deliveries"
        # A job that ends at the cap: its delivery is not sent, and its log says why.
        job_id, _ = jobs[3]
        # As the worker calls it: the organisation is looked up.
        assert start_delivery(job_id, settings=get_settings()) is None
        assert [d["error"] for d in _deliveries(job_id)] == ["too_many_pending_deliveries"]


# --- deleting a person leaves no trace of who it was (item 12) --------------------------------------


def test_deleting_a_person_redacts_the_jobs_and_the_audit_log_that_name_it(
    client, operator_headers, admin_headers, worker
):
    from tests import images
    from tests.conftest import submit_batch, upload, wait_batch, wait_for_job

    tom = images.tom_hanks()
    name, external_id = "Secret Person", "emp-secret-42"
    manifest = [{"file": "a.jpg", "name": name, "external_id": external_id}]
    response = submit_batch(
        client, operator_headers, {"manifest": json.dumps(manifest), "images": [upload(tom, "a.jpg")]}
    )
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["batch_id"]
    batch = wait_batch(client, operator_headers, batch_id)
    assert batch["status"] == "succeeded", batch
    person_id = batch["items"][0]["person_id"]

    photo = images.another_photo(tom, scale=2.0)
    recognized = client.post(
        "/api/v1/recognize", data={"image": upload(photo)}, headers=operator_headers, content_type="multipart/form-data"
    ).get_json()["job_id"]
    verified = client.post(
        "/api/v1/verify",
        data={"image": upload(photo), "person_id": person_id},
        headers=operator_headers,
        content_type="multipart/form-data",
    ).get_json()["job_id"]
    recognition = wait_for_job(client, operator_headers, recognized)
    assert recognition["result"]["faces"][0]["matches"][0]["name"] == name
    assert wait_for_job(client, operator_headers, verified)["result"]["person_id"] == person_id

    assert client.delete(f"/api/v1/persons/{person_id}", headers=operator_headers).status_code == 204

    for job_id in (recognized, verified):
        text = client.get(f"/api/v1/jobs/{job_id}", headers=operator_headers).get_data(as_text=True)
        for secret in (name, external_id, person_id):
            assert secret not in text, (job_id, secret, text)
    recognition = client.get(f"/api/v1/jobs/{recognized}", headers=operator_headers).get_json()["result"]
    assert recognition["faces"][0]["matches"] == [] and recognition["redacted_matches"] == 1
    verification = client.get(f"/api/v1/jobs/{verified}", headers=operator_headers).get_json()["result"]
    assert verification["person_id"] is None and "similarity" in verification
    batch_text = client.get(f"/api/v1/enrollments/{batch_id}", headers=operator_headers).get_data(as_text=True)
    assert name not in batch_text and external_id not in batch_text
    audit = client.get("/api/v1/audit?limit=200", headers=admin_headers).get_json()["items"]
    deleted = [event for event in audit if event["action"] == "person.delete"]
    assert [event["target_id"] for event in deleted] == [person_id] and deleted[0]["details"] == {}
    assert name not in json.dumps(audit) and external_id not in json.dumps(audit)


def test_gallery_names_with_a_trailing_newline_are_refused(client, operator_headers, admin_headers):
    """pydantic's `pattern` searches; `$` must not let 'staff\\n' through (nor any other field's)."""
    from tests import images
    from tests.conftest import upload

    for name in ("staff\n", "staff\r\n", "\nstaff", "sta\nff"):
        created = client.post("/api/v1/galleries", json={"name": name}, headers=operator_headers)
        assert created.status_code == 400, (name, created.get_json())
        recognized = client.post(
            "/api/v1/recognize",
            data={"image": upload(images.tom_hanks()), "gallery": name},
            headers=operator_headers,
            content_type="multipart/form-data",
        )
        assert recognized.status_code == 400, (name, recognized.get_json())
        listed = client.get("/api/v1/persons", query_string={"gallery": name}, headers=operator_headers)
        assert listed.status_code == 400, (name, listed.get_json())
        key = client.post(
            "/api/v1/api-keys", json={"name": "k", "role": "operator", "galleries": [name]}, headers=admin_headers
        )
        assert key.status_code == 400, (name, key.get_json())
    assert client.post("/api/v1/galleries", json={"name": "staff"}, headers=operator_headers).status_code == 201


def test_a_webhooks_only_worker_loads_no_model():
    from workers.celery_app import make_celery, runs_jobs

    both, webhooks_only, jobs_only = make_celery(), make_celery(), make_celery()
    webhooks_only.amqp.queues.select(["webhooks"])  # what `celery worker -Q webhooks` does
    jobs_only.amqp.queues.select(["faceapi"])
    assert runs_jobs(both) and runs_jobs(jobs_only) and not runs_jobs(webhooks_only)

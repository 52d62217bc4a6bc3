"""The console's pages through the test client (no browser, no worker): sign-in sessions, CSRF,
roles, organisations, escaping, statements per page and the speed of a 10,000-person gallery.
The browser tests are tests/stack/test_console_browser.py."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from sqlalchemy import event

from tests.conftest import gallery_of, make_account, stored_job

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_of(client, path: str = "/console/login") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, email: str, password: str):
    token = csrf_of(client)
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture()
def operator(services):
    return make_account("operator")


@pytest.fixture()
def console(app, operator):
    """A test client signed in to the console as a fresh operator."""
    client = app.test_client()
    response = sign_in(client, *operator)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def account_id(db, email: str) -> uuid.UUID:
    from sqlalchemy import select

    from domain.models import Account

    return db.execute(select(Account.id).where(Account.email == email)).scalar_one()


def add_persons(db, owner_email: str, gallery: str, names: list[str]) -> list[uuid.UUID]:
    """Persons written straight to the database (no faces: the pages must cope with that too)."""
    from domain.jobs import now
    from domain.models import Person

    row = gallery_of(db, account_id(db, owner_email), gallery)
    ids = []
    for name in names:
        person = Person(id=uuid.uuid4(), gallery_id=row.id, name=name, consent_at=now())
        db.add(person)
        ids.append(person.id)
    db.commit()
    return ids


def test_pages_need_a_session_and_the_session_cookie_is_strict(app, operator):
    client = app.test_client()
    response = client.get("/console/")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    response = sign_in(client, *operator)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert client.get("/console/").status_code == 200


def test_a_wrong_password_is_refused_with_one_message(app, operator):
    response = sign_in(app.test_client(), operator[0], "wrong password!")
    assert response.status_code == 401
    assert "Invalid email or password." in response.get_data(as_text=True)


def test_signing_out_revokes_the_session_even_for_a_copied_cookie(app, console):
    cookie = console.get_cookie("faceapi_console", path="/console").value
    token = csrf_of(console, "/console/")
    assert console.post("/console/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("faceapi_console", cookie, path="/console")
    response = replay.get("/console/")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_a_state_change_without_the_csrf_token_is_refused(console, db, operator):
    (person_id,) = add_persons(db, operator[0], "csrf", ["Kept"])
    response = console.post(f"/console/persons/{person_id}/delete", data={"confirm": "yes"})
    assert response.status_code == 400 and "csrf_invalid" in response.get_data(as_text=True)
    response = console.post(f"/console/persons/{person_id}/delete", data={"confirm": "yes", "csrf_token": "forged"})
    assert response.status_code == 400
    assert console.get(f"/console/persons/{person_id}").status_code == 200


def test_security_headers(console):
    response = console.get("/console/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_viewer_sees_no_actions_and_a_forged_action_is_refused(app, db, operator):
    (person_id,) = add_persons(db, operator[0], "viewed", ["Someone"])
    viewer = app.test_client()
    assert sign_in(viewer, *make_account("user", colleague_of=operator[0])).status_code == 302
    page = viewer.get("/console/").get_data(as_text=True)
    assert "Enroll" not in page and "Recognize" not in page
    token = csrf_of(viewer, "/console/")
    response = viewer.post(f"/console/persons/{person_id}/delete", data={"confirm": "yes", "csrf_token": token})
    assert response.status_code == 403
    assert viewer.get("/console/galleries/viewed").status_code == 403


def test_another_organisations_ids_answer_404(app, console, db):
    stranger = make_account("operator")
    (person_id,) = add_persons(db, stranger[0], "theirs", ["Theirs"])
    assert console.get(f"/console/persons/{person_id}").status_code == 404
    assert console.get("/console/galleries/theirs").status_code == 404
    job = stored_job(db, account_id(db, stranger[0]), gallery="theirs")
    db.commit()
    assert console.get(f"/console/jobs/{job.id}.json").status_code == 404
    token = csrf_of(console, "/console/")
    response = console.post(f"/console/persons/{person_id}/delete", data={"confirm": "yes", "csrf_token": token})
    assert response.status_code == 404


def test_names_are_escaped(console, db, operator):
    name = "<img src=x onerror=alert(1)>"
    (person_id,) = add_persons(db, operator[0], "escape", [name])
    for path in ("/console/galleries/escape", f"/console/persons/{person_id}"):
        page = console.get(path).get_data(as_text=True)
        assert name not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


class Statements:
    def __init__(self, engine):
        self.engine, self.count = engine, 0

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, *args, **kwargs):
        self.count += 1


def statements_for(console, path: str) -> int:
    from domain.db import get_engine

    with Statements(get_engine()) as counted:
        assert console.get(path).status_code == 200
    return counted.count


def test_no_page_issues_a_query_per_row(console, db, operator):
    add_persons(db, operator[0], "few", [f"P{i}" for i in range(3)])
    add_persons(db, operator[0], "many", [f"P{i}" for i in range(40)])
    for page in ("/console/galleries/{}", "/console/"):
        few = statements_for(console, page.format("few"))
        many = statements_for(console, page.format("many"))
        assert many == few, f"{page}: {few} statements for 3 persons, {many} for 40"


def test_a_10000_person_gallery_page_answers_in_under_300_ms(console, db, operator):
    from sqlalchemy import insert

    from domain.jobs import now
    from domain.models import Person

    row = gallery_of(db, account_id(db, operator[0]), "big")
    stamp = now()
    db.execute(
        insert(Person),
        [
            {
                "id": uuid.uuid4(),
                "gallery_id": row.id,
                "name": f"Person {i:05d}",
                "external_id": f"E{i:05d}",
                "consent_at": stamp,
            }
            for i in range(10_000)
        ],
    )
    db.commit()
    console.get("/console/galleries/big")  # warm
    for path in ("/console/galleries/big", "/console/galleries/big?q=E09999", "/console/galleries/big?q=person 05"):
        started = time.perf_counter()
        response = console.get(path)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert elapsed < 0.3, f"{path} took {elapsed * 1000:.0f} ms"
    assert "Person 09999" in console.get("/console/galleries/big?q=E09999").get_data(as_text=True)
    first = console.get("/console/galleries/big").get_data(as_text=True)
    following = re.search(r'rel="next" href="\?([^"]+)"', first).group(1).replace("&amp;", "&")
    second = console.get(f"/console/galleries/big?{following}").get_data(as_text=True)
    names = [set(re.findall(r'class="person-name">([^<]+)<', page)) for page in (first, second)]
    assert len(names[0]) == len(names[1]) == 48 and not names[0] & names[1], "the next page shows the next persons"


def test_the_console_login_is_rate_limited_like_the_apis(app, operator):
    from tests.conftest import override_settings

    with override_settings(RATELIMIT_LOGIN="3/minute"):
        client = app.test_client()
        statuses = [sign_in(client, operator[0], "wrong password!").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = sign_in(client, operator[0], operator[1])
        assert limited.status_code == 429 and "Too many attempts" in limited.get_data(as_text=True)


def test_a_password_change_ends_every_console_session(app, console, operator):
    from tests.conftest import bearer, login

    time.sleep(1.1)  # like a token's iat, a session's start counts in whole seconds
    token = login(app.test_client(), *operator)["access_token"]
    changed = app.test_client().post(
        "/api/v1/auth/password",
        json={"current_password": operator[1], "new_password": "another long password"},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.get_json()
    response = console.get("/console/")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def session_key(app, client) -> str:
    """The Redis key of the client's console session (its cookie holds the id, signed)."""
    from web.console.session import SID, _key

    cookie = client.get_cookie("faceapi_console", path="/console").value
    return _key(app.session_interface.get_signing_serializer(app).loads(cookie)[SID])


def test_a_session_lives_as_long_as_an_access_token_from_its_last_request(app, console):
    from config import get_settings
    from domain.notifications import redis_client

    key, idle = session_key(app, console), get_settings().jwt_access_minutes * 60
    assert idle - 5 <= redis_client().ttl(key) <= idle
    redis_client().expire(key, 5)
    assert console.get("/console/").status_code == 200
    assert idle - 5 <= redis_client().ttl(key) <= idle, "each request extends it"
    redis_client().delete(key)  # what the idle time does when it runs out
    assert console.get("/console/").status_code == 302


def test_the_cookie_is_secure_outside_development():
    from flask import Flask

    from config import get_settings
    from web.console.session import configure

    for env, secure in (("development", False), ("production", True)):
        app = Flask(__name__)
        configure(app, get_settings().model_copy(update={"env": env}))
        assert app.config["SESSION_COOKIE_SECURE"] is secure
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict" and app.config["SESSION_COOKIE_HTTPONLY"]


def add_batches(db, owner_email: str, count: int) -> None:
    from domain.models import Account, Batch

    owner = db.get(Account, account_id(db, owner_email))
    for _ in range(count):
        db.add(Batch(owner_id=owner.id, organisation_id=owner.organisation_id, gallery_name="batches", total=1))
    db.commit()


def add_faces(db, person_id: uuid.UUID, count: int) -> None:
    from domain.models import Face, Person

    person = db.get(Person, person_id)
    for i in range(count):
        db.add(
            Face(
                person_id=person.id,
                gallery_id=person.gallery_id,
                embedding=[0.0] * 511 + [1.0],
                model="test",
                det_score=0.9,
                bbox=[0, 0, 10, 10],
                quality={"sharpness": 100.0, "yaw": 1.0, "pitch": 2.0},
                source_sha256=f"{i:064x}",
            )
        )
    db.commit()


def test_the_person_and_jobs_pages_issue_no_query_per_face_or_batch(app, db, operator):
    few, many = add_persons(db, operator[0], "faces", ["Few", "Many"])
    add_faces(db, few, 1)
    add_faces(db, many, 12)
    pages = []
    for batches in (1, 12):
        client = app.test_client()
        email, password = make_account("operator")
        add_batches(db, email, batches)
        sign_in(client, email, password)
        pages.append(statements_for(client, "/console/jobs"))
    assert pages[0] == pages[1], f"jobs page: {pages[0]} statements with 1 batch, {pages[1]} with 12"
    client = app.test_client()
    sign_in(client, *operator)
    few_count, many_count = (statements_for(client, f"/console/persons/{p}") for p in (few, many))
    assert few_count == many_count, f"person page: {few_count} statements for 1 face, {many_count} for 12"


def test_a_face_for_a_person_named_in_a_gallery(console, db, operator):
    import io

    from tests.images import tom_hanks

    add_persons(db, operator[0], "named", ["Ada", "Ada", "Bob"])
    token = csrf_of(console, "/console/")

    def add(person: str, gallery: str = "named"):
        return console.post(
            f"/console/galleries/{gallery}/faces",
            data={"person": person, "image": (io.BytesIO(tom_hanks()), "face.png")},
            headers={"X-CSRFToken": token, "Accept": "application/json"},
        )

    assert add("Nobody").get_json()["error"]["code"] == "person_not_found"
    assert add("Ada").status_code == 409, "two persons are named Ada: the id is needed"
    accepted = add("Bob")
    assert accepted.status_code == 202 and accepted.get_json()["job_id"]
    assert add("Bob", gallery="not-ours").status_code == 404


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("/console/jobs", "/console/jobs"),
        ("//evil.example/console", "/console/"),
        ("https://evil.example", "/console/"),
    ],
)
def test_after_signing_in_only_a_console_address_is_followed(app, operator, target, landing):
    client = app.test_client()
    token = csrf_of(client)
    response = client.post(
        "/console/login",
        query_string={"next": target},
        data={"email": operator[0], "password": operator[1], "csrf_token": token},
    )
    assert response.status_code == 302 and response.headers["Location"] == landing

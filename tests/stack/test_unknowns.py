"""Recurring unknown faces on the real stack: strangers get stable ids, a named group becomes a
person, turning the pool off or letting it expire deletes it, and galleries that never opted in
keep nothing about the faces they did not recognize (checked in the database itself)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from domain.models import AuditEvent, Gallery, UnknownFace, UnknownGroup
from tests import images
from tests.conftest import upload
from tests.stack.test_webhooks import Receiver

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"
MARGIN = 0.6  # around a face box, as a share of its size: a portrait, not an aligned crop


def recognize(client, headers, image: bytes, gallery: str, **fields) -> dict:
    response = client.post(
        "/api/v1/recognize?wait=30",
        data={"image": upload(image), "gallery": gallery, **fields},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 200, response.get_json()
    job = response.get_json()
    assert job["status"] == "succeeded", job
    return job["result"]


def make_gallery(client, headers, retention_days: int = 30) -> str:
    name = f"door-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "unknowns": {"enabled": True, "retention_days": retention_days}}
    response = client.post("/api/v1/galleries", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["unknowns"] == {"enabled": True, "retention_days": retention_days}
    return name


@pytest.fixture(scope="module")
def portraits(app, worker) -> list[bytes]:
    """One portrait per person of the bundled group photo, left to right, cut around the boxes
    that a recognition of it finds."""
    from tests.conftest import login, make_account

    client = app.test_client()
    headers = {"Authorization": f"Bearer {login(client, *make_account('operator'))['access_token']}"}
    client.post("/api/v1/galleries", json={"name": "empty"}, headers=headers)
    faces = recognize(client, headers, images.group_photo(), "empty")["faces"]
    assert len(faces) == 6
    boxes = sorted((face["bbox"] for face in faces), key=lambda box: box[0])
    return [images.crop(images.group_photo(), _widened(box)) for box in boxes]


def _widened(box: list[float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    return int(max(0, x1 - dx)), int(max(0, y1 - dy)), int(x2 + dx), int(y2 + dy)


def sightings_of(portrait: bytes) -> list[bytes]:
    """Four different files of one person: as cut, mirrored and darker, and both at other sizes."""
    return [
        portrait,
        images.another_photo(portrait),
        images.another_photo(portrait, scale=1.6),
        images.distinct_copy(images.another_photo(images.another_photo(portrait), scale=1.3), "4th"),
    ]


def unknown_id(result: dict) -> int:
    (face,) = result["faces"]
    assert face["matches"] == [], face["matches"]
    return face["unknown"]["id"]


def test_three_strangers_among_passers_by_keep_one_stable_id_each(client, operator_headers, portraits, db):
    gallery = make_gallery(client, operator_headers)
    strangers, passers_by = portraits[:3], portraits[3:]
    arrivals: list[tuple[str, bytes]] = []
    for round_ in range(4):  # interleaved: each stranger once per round, a passer-by between
        for number, portrait in enumerate(strangers):
            arrivals.append((f"stranger-{number}", sightings_of(portrait)[round_]))
        if round_ < len(passers_by):
            arrivals.append((f"passer-by-{round_}", passers_by[round_]))
    seen: dict[str, list[int]] = {}
    for who, photo in arrivals:
        seen.setdefault(who, []).append(unknown_id(recognize(client, operator_headers, photo, gallery, source="door")))

    stranger_ids = [seen[f"stranger-{n}"] for n in range(3)]
    assert all(len(set(ids)) == 1 for ids in stranger_ids), seen  # one id each, at every sighting
    assert len({ids[0] for ids in stranger_ids}) == 3, seen  # and not each other's
    passer_ids = {ids[0] for who, ids in seen.items() if who.startswith("passer")}
    assert len(passer_ids) == 3 and not passer_ids & {ids[0] for ids in stranger_ids}, seen

    listed = client.get(f"/api/v1/galleries/{gallery}/unknowns?order=count", headers=operator_headers).get_json()
    assert listed["total"] == 6
    top = listed["items"][:3]
    assert sorted(g["id"] for g in top) == sorted(ids[0] for ids in stranger_ids)
    assert all(g["sightings"] == 4 and g["faces"] == 4 and g["recurring"] and g["sources"] == ["door"] for g in top)
    crop = client.get(top[0]["sample_crops"][0], headers=operator_headers)
    assert crop.status_code == 200 and crop.mimetype == "image/jpeg" and crop.data[:2] == b"\xff\xd8"

    # The periodic re-grouping keeps every id where it is.
    from workers.tasks import tend_unknowns

    tend_unknowns()
    again = client.get(f"/api/v1/galleries/{gallery}/unknowns", headers=operator_headers).get_json()
    assert sorted(g["id"] for g in again["items"]) == sorted(g["id"] for g in listed["items"])


def test_naming_a_group_makes_the_next_photo_recognized_by_name(client, operator_headers, portraits, db):
    gallery = make_gallery(client, operator_headers)
    photos = sightings_of(portraits[1])
    ids = {unknown_id(recognize(client, operator_headers, photo, gallery)) for photo in photos[:3]}
    (number,) = ids
    named = client.post(
        f"/api/v1/galleries/{gallery}/unknowns/{number}/enroll",
        json={"name": "Visitor Seventeen", "external_id": "v-17", "consent": True},
        headers=operator_headers,
    )
    assert named.status_code == 201, named.get_json()
    assert named.get_json()["faces_enrolled"] == 3
    (face,) = recognize(client, operator_headers, photos[3], gallery)["faces"]
    assert [m["name"] for m in face["matches"]][:1] == ["Visitor Seventeen"]
    assert "unknown" not in face
    gone = client.get(f"/api/v1/galleries/{gallery}/unknowns/{number}", headers=operator_headers)
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "unknown_not_found"
    person = client.get(f"/api/v1/persons/{named.get_json()['person_id']}", headers=operator_headers).get_json()
    assert person["name"] == "Visitor Seventeen" and len(person["faces"]) == 3


def test_merging_and_deleting_groups(client, operator_headers, portraits):
    gallery = make_gallery(client, operator_headers)
    first = unknown_id(recognize(client, operator_headers, portraits[0], gallery))
    second = unknown_id(recognize(client, operator_headers, portraits[4], gallery))
    merged = client.post(
        f"/api/v1/galleries/{gallery}/unknowns/{second}/merge", json={"into": first}, headers=operator_headers
    )
    assert merged.status_code == 200, merged.get_json()
    assert merged.get_json()["id"] == first and merged.get_json()["sightings"] == 2
    face_id = merged.get_json()["items"][0]["id"]
    url = f"/api/v1/galleries/{gallery}/unknowns/{first}"
    assert client.delete(f"{url}/faces/{face_id}", headers=operator_headers).status_code == 204
    assert client.get(url, headers=operator_headers).get_json()["faces"] == 1
    assert client.delete(url, headers=operator_headers).status_code == 204
    assert client.get(url, headers=operator_headers).status_code == 404


def pool_rows(db, gallery: str) -> tuple[int, int]:
    db.rollback()  # a fresh snapshot
    gallery_id = db.execute(select(Gallery.id).where(Gallery.name == gallery)).scalar_one()
    faces = db.execute(select(func.count()).where(UnknownFace.gallery_id == gallery_id)).scalar_one()
    groups = db.execute(select(func.count()).where(UnknownGroup.gallery_id == gallery_id)).scalar_one()
    return faces, groups


def test_turning_the_pool_off_deletes_it(client, operator_headers, portraits, db):
    gallery = make_gallery(client, operator_headers)
    recognize(client, operator_headers, portraits[2], gallery)
    assert pool_rows(db, gallery) == (1, 1)
    response = client.patch(
        f"/api/v1/galleries/{gallery}", json={"unknowns": {"enabled": False}}, headers=operator_headers
    )
    assert response.status_code == 200 and response.get_json()["unknowns"]["enabled"] is False
    assert pool_rows(db, gallery) == (0, 0)
    off = client.get(f"/api/v1/galleries/{gallery}/unknowns", headers=operator_headers)
    assert off.status_code == 409 and off.get_json()["error"]["code"] == "unknowns_disabled"
    (face,) = recognize(client, operator_headers, portraits[2], gallery)["faces"]
    assert "unknown" not in face and pool_rows(db, gallery) == (0, 0)


def test_retention_purges_old_faces_and_audits_it(client, operator_headers, portraits, db):
    from workers.tasks import tend_unknowns

    gallery = make_gallery(client, operator_headers, retention_days=1)
    recognize(client, operator_headers, portraits[3], gallery)
    recognize(client, operator_headers, portraits[5], gallery)
    db.rollback()
    gallery_id = db.execute(select(Gallery.id).where(Gallery.name == gallery)).scalar_one()
    old = db.execute(select(UnknownFace.id).where(UnknownFace.gallery_id == gallery_id)).scalars().first()
    db.execute(update(UnknownFace).where(UnknownFace.id == old).values(seen_at=func.now() - timedelta(days=2)))
    db.commit()
    assert tend_unknowns()["purged"] >= 1
    assert pool_rows(db, gallery) == (1, 1)
    purge = db.execute(
        select(AuditEvent).where(AuditEvent.action == "unknowns.purge", AuditEvent.target_id == str(gallery_id))
    ).scalar_one()
    assert purge.details["faces"] == 1 and purge.details["groups"] == 1


def test_a_gallery_that_never_opted_in_keeps_nothing_about_unmatched_faces(client, operator_headers, db):
    gallery = f"plain-{uuid.uuid4().hex[:6]}"
    client.post("/api/v1/galleries", json={"name": gallery}, headers=operator_headers)
    result = recognize(client, operator_headers, images.group_photo(), gallery)
    assert len(result["faces"]) == 6 and all("unknown" not in face for face in result["faces"])
    assert pool_rows(db, gallery) == (0, 0)


def test_deleting_the_gallery_erases_its_pool(client, operator_headers, portraits, db):
    gallery = make_gallery(client, operator_headers)
    recognize(client, operator_headers, portraits[0], gallery)
    db.rollback()
    gallery_id = db.execute(select(Gallery.id).where(Gallery.name == gallery)).scalar_one()
    assert client.delete(f"/api/v1/galleries/{gallery}", headers=operator_headers).status_code == 204
    db.rollback()
    assert db.execute(select(func.count()).where(UnknownFace.gallery_id == gallery_id)).scalar_one() == 0
    assert db.execute(select(func.count()).where(UnknownGroup.gallery_id == gallery_id)).scalar_one() == 0


def _event(headers: dict[str, str]) -> str:
    return next(value for name, value in headers.items() if name.lower() == "x-faceapi-event")


def test_a_stranger_seen_often_enough_fires_unknown_recurring(client, operator_headers, portraits):
    gallery = make_gallery(client, operator_headers)
    receiver = Receiver([])
    try:
        for photo in sightings_of(portraits[4])[:3]:  # UNKNOWNS_RECURRING_SIGHTINGS: 3
            recognize(client, operator_headers, photo, gallery, webhook_url=receiver.url, source="gate")
        receiver.wait_for(4)  # three job webhooks and one unknown.recurring
        events = {_event(headers): body for headers, body in receiver.requests}
        assert "unknown.recurring" in events, list(events)
        document = json.loads(events["unknown.recurring"])
        assert document["gallery"] == gallery
        assert document["unknown"]["sightings"] == 3 and document["unknown"]["sources"] == ["gate"]
    finally:
        receiver.close()


def test_the_sdk_and_the_command_line_walk_the_pool(live_server, portraits):
    import subprocess
    import sys

    from faceapi_client import FaceAPI

    from tests.conftest import ROOT, make_account

    email, password = make_account("operator")
    gallery = f"sdk-{uuid.uuid4().hex[:6]}"
    with FaceAPI(live_server.url, email=email, password=password) as api:
        api.create_gallery(gallery)
        assert api.set_gallery_unknowns(gallery, True, retention_days=7).unknowns.retention_days == 7
        photos = sightings_of(portraits[5])[:2]
        faces = [api.recognize(photo, gallery=gallery, source="lobby").result.faces[0] for photo in photos]
        assert faces[0].unknown is not None and faces[0].unknown.id == faces[1].unknown.id
        number = faces[0].unknown.id
        (group,) = api.list_unknowns(gallery).items
        assert (group.id, group.sightings, group.sources) == (number, 2, ["lobby"])
        face = api.get_unknown(gallery, number).items[0]
        assert api.unknown_face_crop(gallery, number, face.id)[:2] == b"\xff\xd8"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update(FACEAPI_URL=live_server.url, FACEAPI_EMAIL=email, FACEAPI_PASSWORD=password)
    listed = subprocess.run(
        [sys.executable, "-m", "faceapi_client", "unknowns", "list", gallery, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["items"][0]["id"] == number
    named = subprocess.run(
        [sys.executable, "-m", "faceapi_client", "unknowns", "enroll", gallery, str(number), "--name", "Lobby Regular"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert named.returncode == 0 and "is now person" in named.stderr + named.stdout, named.stderr


@pytest.mark.dataset
def test_real_strangers_from_lfw_keep_one_id_each(client, operator_headers):
    """Three LFW people with four photos each, interleaved with four single-photo passers-by."""
    lfw = images.dataset_dir("LFW_DIR") / "images"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    recurring = [p for p in people if len(list(p.glob("*.jpg"))) >= 4][10:13]
    passers_by = [p for p in people if len(list(p.glob("*.jpg"))) == 1][20:24]
    gallery = make_gallery(client, operator_headers)
    seen: dict[str, set[int]] = {}
    for round_ in range(4):
        arrivals = [(p.name, sorted(p.glob("*.jpg"))[round_]) for p in recurring]
        arrivals.append((passers_by[round_].name, next(passers_by[round_].glob("*.jpg"))))
        for who, path in arrivals:
            result = recognize(client, operator_headers, path.read_bytes(), gallery, max_faces="1")
            seen.setdefault(who, set()).add(unknown_id(result))
    ids = [seen[p.name] for p in recurring]
    assert all(len(one) == 1 for one in ids), seen
    assert len(set().union(*ids)) == 3, seen
    assert not set().union(*ids) & set().union(*(seen[p.name] for p in passers_by)), seen


def test_the_last_account_leaving_takes_its_organisations_pools_along(client, portraits, db):
    from tests.conftest import bearer, login, make_account

    email, password = make_account("operator")  # alone in an organisation of its own
    headers = bearer(login(client, email, password)["access_token"])
    gallery = make_gallery(client, headers)
    recognize(client, headers, portraits[1], gallery)
    db.rollback()
    gallery_id = db.execute(select(Gallery.id).where(Gallery.name == gallery)).scalar_one()
    erased = client.delete("/api/v1/auth/me", json={"password": password}, headers=headers)
    assert erased.status_code == 204, erased.get_json()
    db.rollback()
    assert db.execute(select(func.count()).where(UnknownFace.gallery_id == gallery_id)).scalar_one() == 0
    assert db.execute(select(func.count()).where(UnknownGroup.gallery_id == gallery_id)).scalar_one() == 0

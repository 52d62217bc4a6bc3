"""The console's unknown faces page in a real browser: a gallery's strangers with their crops, and
one named as a person from there (tests/stack/test_console_browser.py has the harness)."""

from __future__ import annotations

import uuid

from tests.conftest import bearer, login, make_account, upload
from tests.images import another_photo
from tests.stack.test_console_browser import browse, browser, face_photo, screenshots, shot, sign_in  # noqa: F401


def test_naming_a_stranger_from_the_unknown_faces_page(client, browse, screenshots):  # noqa: F811
    account = make_account("operator")
    headers = bearer(login(client, *account)["access_token"])
    gallery = f"lobby-{uuid.uuid4().hex[:6]}"
    body = {"name": gallery, "unknowns": {"enabled": True, "retention_days": 14}}
    assert client.post("/api/v1/galleries", json=body, headers=headers).status_code == 201
    for photo in (face_photo(4), another_photo(face_photo(4)), another_photo(face_photo(4), scale=1.5)):
        response = client.post(
            "/api/v1/recognize?wait=30",
            data={"image": upload(photo), "gallery": gallery, "source": "lobby"},
            headers=headers,
            content_type="multipart/form-data",
        )
        assert response.get_json()["status"] == "succeeded", response.get_json()

    page = browse().new_page()
    sign_in(page, account)
    page.goto(f"/console/galleries/{gallery}")
    page.get_by_role("link", name="Unknown faces →").click()
    page.wait_for_url(f"**/console/galleries/{gallery}/unknowns")
    card = page.locator("li.unknown")
    assert card.count() == 1
    assert "3 sightings" in card.inner_text() and "lobby" in card.inner_text()
    crops = card.locator("img")
    assert crops.count() == 3
    assert all(crops.nth(i).evaluate("img => img.complete && img.naturalWidth === 112") for i in range(3))
    shot(page, screenshots / "unknowns.png")

    card.get_by_label("Name for unknown #1").fill("Lobby Regular")
    card.get_by_label("This person has consented").check()
    card.get_by_role("button", name="Enroll as a person").click()
    page.wait_for_url("**/console/persons/*")
    assert page.locator("h1").inner_text() == "Lobby Regular"
    assert page.locator("ul.faces > li.face").count() == 3

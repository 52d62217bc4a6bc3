"""Gallery names are case-sensitive, but a new gallery that differs from one of the organisation's
only in case is refused: "Staff" beside "staff" would split one gallery's persons in two."""

from __future__ import annotations

import uuid

from tests import images
from tests.conftest import upload


def test_a_gallery_differing_only_in_case_is_refused_naming_the_one_there(client, operator_headers):
    name = f"staff-{uuid.uuid4().hex[:6]}"
    assert client.post("/api/v1/galleries", json={"name": name}, headers=operator_headers).status_code == 201
    response = client.post("/api/v1/galleries", json={"name": name.upper()}, headers=operator_headers)
    assert response.status_code == 409, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "gallery_name_differs_in_case" and error["did_you_mean"] == name
    # Enrolling into the other case creates nothing either.
    form = {"name": "Tom", "consent": "true", "gallery": name.title(), "image": upload(images.tom_hanks())}
    enrolled = client.post("/api/v1/persons", data=form, headers=operator_headers, content_type="multipart/form-data")
    assert enrolled.status_code == 409 and enrolled.get_json()["error"]["did_you_mean"] == name
    names = [g["name"] for g in client.get("/api/v1/galleries", headers=operator_headers).get_json()["items"]]
    assert names == [name]

"""The docs page's "Try it out": optional form fields are described so that Swagger UI leaves them
out, the text `null` is never stored, and public operations show no lock."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from domain.models import Person
from tests import images
from tests.conftest import upload

PUBLIC = {("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/signup"), ("get", "/healthz"), ("get", "/readyz")}


def _document(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


def _form_schemas(document: dict) -> dict[str, dict]:
    forms = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if body:
                name = body["schema"]["$ref"].rpartition("/")[2]
                forms[f"{method} {path}"] = document["components"]["schemas"][name]
    return forms


def test_optional_form_fields_have_no_null_for_swagger_ui_to_send(client):
    forms = _form_schemas(_document(client))
    assert "post /api/v1/recognize" in forms and "post /api/v1/persons" in forms
    for operation, form in forms.items():
        for name, field in form["properties"].items():
            if name in form.get("required", ()):
                continue
            assert field.get("default", "left out") is not None, (operation, name, field)
            assert {"type": "null"} not in field.get("anyOf", ()), (operation, name, field)
            if "default" not in field and field.get("type") == "string" and field.get("format") != "binary":
                # Swagger UI would fill in the sample "string", and send it
                assert field.get("examples") == [""], (operation, name, field)
    recognize = forms["post /api/v1/recognize"]["properties"]
    assert recognize["threshold"]["type"] == "number" and recognize["webhook_url"]["type"] == "string"


def test_public_operations_declare_no_security_and_the_others_a_bearer_token(client):
    document = _document(client)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if (method, path) in PUBLIC:
                assert operation["security"] == [], (method, path)
            else:
                assert operation["security"] == [{"bearer": []}], (method, path)


def test_a_form_that_sends_null_as_text_stores_no_null(client, admin_headers, db):
    """What "Try it out" sent before: `null` in each optional field it had a null default for."""
    form = {
        "name": "Tom Hanks",
        "consent": "true",
        "image": upload(images.tom_hanks()),
        "external_id": "null",
        "webhook_url": "null",
    }
    answer = client.post("/api/v1/persons", data=form, headers=admin_headers, content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_json()
    db.rollback()
    person = db.execute(select(Person).where(Person.id == answer.get_json()["person_id"])).scalar_one()
    assert person.external_id is None

    recognize = {"image": upload(images.tom_hanks()), "threshold": "null", "webhook_url": "null"}
    answer = client.post("/api/v1/recognize", data=recognize, headers=admin_headers, content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_json()  # as if left out: the gallery's threshold


@pytest.mark.parametrize("field", ["name", "gallery"])
def test_null_as_text_for_a_name_is_refused_naming_the_field(client, admin_headers, field):
    form = {"name": "Tom Hanks", "consent": "true", "image": upload(images.tom_hanks()), field: "null"}
    answer = client.post("/api/v1/persons", data=form, headers=admin_headers, content_type="multipart/form-data")
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert field in error["message"] and "'null'" in error["message"], error

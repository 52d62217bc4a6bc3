"""A form field of several files (POST /recognize's and POST /enrollments' `images`) is described
so that Swagger UI can draw it and leaves it out untouched: its example is an empty list. An
example of "" made "Try it out" fail to draw the operation at all (JSON.parse of the empty text),
so neither upload could be tried from the page; with none, it sent the sample text "string"."""

from __future__ import annotations

from tests.api.test_docs_page import _document, _form_schemas


def test_a_form_array_starts_as_an_empty_list(client):
    forms = _form_schemas(_document(client))
    arrays = {
        (operation, name): field
        for operation, form in forms.items()
        for name, field in form["properties"].items()
        if field.get("type") == "array"
    }
    assert ("post /api/v1/recognize", "images") in arrays and ("post /api/v1/enrollments", "images") in arrays
    for where, field in arrays.items():
        assert field.get("examples") == [[]] and "example" not in field, (where, field)

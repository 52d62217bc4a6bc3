"""The application object that carries the API contract: flask-openapi3's `OpenAPI` (a Flask app)
serves `/api/v1/openapi.json`, built from the pydantic models in `web/schemas.py` that also
validate every request, and a Swagger UI at `/api/v1/docs` from the assets of the PyPI package
flask-openapi3-swagger (nothing is fetched from the internet by the browser).

Why flask-openapi3 (docs/API.md has the comparison): pydantic models, the same library as the
settings; Flask 3 blueprints; multipart forms with repeated file parts; OpenAPI 3.1; a locally
served UI; validation that can sit under our own authentication decorators.
"""

from __future__ import annotations

from flask import Response, jsonify, redirect
from flask_openapi3 import Info, OpenAPI

from web import schemas
from web.errors import JSON_BODY_LIMIT
from web.validation import operation_id, validation_error_response

DOCS_PREFIX = "/api/v1/docs"
CONSOLE_PREFIX = "/console"
API_DESCRIPTION = (
    "Enroll persons from photos and recognize them in new photos, as asynchronous jobs. "
    "Every error is `{error: {code, message}}`; every 202 names its job or batch in `Location`. "
    "The InsightFace models are licensed for non-commercial research only. "
    "People work with the same galleries, permissions and audit log in a browser at `/console/`."
)


class ContractApp(OpenAPI):
    """flask-openapi3's app, with the document corrected where the package's defaults say
    something this API does not do."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        for path_item in self.spec_json["paths"].values():
            for operation in path_item.values():
                _validation_answer(operation, self.validation_error_status)
                _json_body_limit(operation)
                _service_failures(operation)
                _wait_refusal(operation)
                # Public operations (web/validation.Resource) say so, not by leaving it to a default.
                operation.setdefault("security", [])
                for form in _form_schemas(operation, self.spec_json["components"]["schemas"]):
                    for name, field in form.get("properties", {}).items():
                        _optional_left_out(field)
                        if name not in form.get("required", ()):
                            _empty_in_the_form(field)
                for parameter in operation.get("parameters", ()):
                    _optional_left_out(parameter.get("schema", {}))


def _form_schemas(operation: dict, components: dict) -> list[dict]:
    """The schemas of the operation's multipart (or urlencoded) body, as stored in `components`."""
    found = []
    for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
        if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            reference = content.get("schema", {}).get("$ref", "")
            found.append(components.get(reference.rpartition("/")[2], content.get("schema", {})))
    return found


def _optional_left_out(field: dict) -> None:
    """An optional form field or query parameter is described as what to send when it is sent
    (`X`, not `X or null`, and no `null` default): a form cannot send a null, and Swagger UI's
    "Try it out" fills a field with the text `null` from such a default, then sends it. Left
    empty, the field is left out and the service applies its default."""
    if field.get("default", ...) is None:
        del field["default"]
    branches = [branch for branch in field.get("anyOf", ()) if branch.get("type") != "null"]
    if "anyOf" in field and len(branches) == 1:
        del field["anyOf"]
        field.update({key: value for key, value in branches[0].items() if key not in field})


def _empty_in_the_form(field: dict) -> None:
    """Swagger UI fills a form field that has no default with a sample of its type ("string", 0)
    and sends it: an optional field without a default gets an empty example, so that the field
    starts empty and, left so, is not sent. An array's (several files) is an empty list: Swagger
    UI parses it as JSON ("" stops it drawing the whole operation), and without one it starts
    with an item that sends the sample "string"."""
    if "default" in field or field.get("format") == "binary" or field.get("type") == "boolean":
        return
    field.setdefault("examples", [[]] if field.get("type") == "array" else [""])


def _validation_answer(operation: dict, status: str) -> None:
    """flask-openapi3 gives every operation that declares no 400 one whose body is a *list* of
    the error model. A failed validation here answers one error document (web/validation.py),
    and an operation with no parameters and no body has nothing to validate: it never answers
    400 at all."""
    response = operation["responses"].get(status)
    if not response or response["content"]["application/json"]["schema"].get("type") != "array":
        return
    if operation.get("parameters") or operation.get("requestBody"):
        response["content"]["application/json"]["schema"] = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    else:
        del operation["responses"][status]


def _json_body_limit(operation: dict) -> None:
    """The app refuses a JSON body over JSON_BODY_LIMIT before any operation sees it (web/__init__.py):
    every operation that takes one may answer 413."""
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        operation["responses"].setdefault(
            "413",
            {
                "description": f"The JSON body is over {JSON_BODY_LIMIT} bytes (request_too_large)",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
            },
        )


def _service_failures(operation: dict) -> None:
    """Any operation may meet a failure of the service rather than of the request: 503 while the
    database or the queue is unreachable (database_unavailable, queue_unavailable, with
    Retry-After where known) and 500 internal_error for a defect. Both answer the error document."""
    error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    operation["responses"].setdefault("500", {"description": "A defect (internal_error)", "content": error})
    operation["responses"].setdefault(
        "503", {"description": "The database or the queue is unreachable: retry shortly", "content": error}
    )


def _wait_refusal(operation: dict) -> None:
    """An operation with `?wait=N` may answer at once, without waiting, when too many waits are
    under way (web/waiting.py): its usual answer, with `Retry-After` saying when to poll again."""
    if not any(p.get("name") == "wait" and p.get("in") == "query" for p in operation.get("parameters", ())):
        return
    header = {
        "description": "Present when the wait was refused (too many under way): the job as it is, "
        "not waited for; poll again after this many seconds",
        "schema": {"type": "integer"},
    }
    for status, response in operation["responses"].items():
        if status.startswith("2"):
            response.setdefault("headers", {})["Retry-After"] = header


ERROR_SCHEMA = schemas.ErrorBody.__name__


def make_app(import_name: str) -> OpenAPI:
    return ContractApp(
        import_name,
        info=Info(title="Face recognition service", version="1.0.0", description=API_DESCRIPTION),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        doc_prefix=DOCS_PREFIX,
        doc_url="/openapi.json",
        validation_error_status="400",
        validation_error_model=schemas.ErrorBody,
        validation_error_callback=validation_error_response,
        operation_id_callback=operation_id,
    )


# What `/` and `/api/v1` answer: where to go from there, for a person who typed the address.
SIGNPOSTS = {
    "docs": DOCS_PREFIX,
    "openapi": "/api/v1/openapi.json",
    "console": "/console/",
    "health": "/healthz",
    "ready": "/readyz",
}


def signposts() -> Response:
    return jsonify(
        service="Face recognition service",
        message=f"The API is under /api/v1: its interactive documentation is at {DOCS_PREFIX}, the "
        "operators' console at /console/.",
        links=SIGNPOSTS,
    )


def add_document_routes(app: OpenAPI) -> None:
    """The document at its documented address, the docs page's short address, and signposts at
    `/` and `/api/v1` (a 404 there left a new user guessing)."""
    app.add_url_rule("/api/v1/openapi.json", "openapi_document", lambda: jsonify(app.api_doc))
    app.add_url_rule(DOCS_PREFIX, "docs_page", lambda: redirect(f"{DOCS_PREFIX}/swagger"))
    app.add_url_rule("/", "signposts", signposts)
    app.add_url_rule("/api/v1", "api_signposts", signposts)
    app.add_url_rule("/api/v1/", "api_signposts_slash", signposts)


def content_security_policy(path: str) -> str:
    """Nothing may load anywhere, except the docs page's and the console's own scripts and styles
    from this origin."""
    if path.startswith(DOCS_PREFIX):
        return (
            "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
        )
    if path.startswith(CONSOLE_PREFIX):
        # The console's own scripts, styles and images, and photos the browser shows before sending
        # them (blob:); never an inline script, nothing from elsewhere, forms only back to itself.
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
    return "default-src 'none'; frame-ancestors 'none'"

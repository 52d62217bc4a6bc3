"""Request validation failures (pydantic, through flask-openapi3) as the one error document.

The first problem decides the answer, in this order: an unknown field (with a suggestion), a
missing one, then any other. A validator may raise `PydanticCustomError(code, message)`: its
code is the answer's code (e.g. `consent_required`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, get_args, get_origin, get_type_hints

from flask import Response, abort, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from werkzeug.datastructures import MultiDict

from domain.errors import ServiceError
from web import schemas
from web.forms import suggest_unknown

# Fields whose absence has a code of its own.
MISSING_CODES = {"consent": ("consent_required", "Enrollment requires the person's consent: send consent=true.")}
_ORDER = {"extra_forbidden": 0, "missing": 1}
# Error types our validators raise (PydanticCustomError): each is the answer's code.
OUR_CODES = frozenset({"missing_field", "invalid_field", "consent_required", "invalid_cursor"})


def _model(error: ValidationError) -> type[BaseModel] | None:
    model = getattr(schemas, error.title, None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed(model: type[BaseModel] | None) -> set[str]:
    if model is None:
        return set()
    return {field.alias or name for name, field in model.model_fields.items()}


def describe(error: ValidationError) -> dict[str, Any]:
    problem = min(error.errors(include_url=False), key=lambda p: _ORDER.get(p["type"], 2))
    field = ".".join(str(part) for part in problem["loc"])
    kind = problem["type"]
    model = _model(error)
    is_query = error.title.endswith("Query")
    if kind == "extra_forbidden":
        unknown = {str(p["loc"][0]) for p in error.errors() if p["type"] == "extra_forbidden" and p["loc"]}
        what = "query_parameter" if is_query else "field"
        return suggest_unknown(unknown, _allowed(model), what).as_dict()
    if not field:  # the body itself: not a JSON object, or absent
        return {"code": "invalid_json", "message": "The request body must be a JSON object."}
    if kind == "missing":
        code, message = MISSING_CODES.get(field, ("missing_field", f"The field '{field}' is required."))
        return {"code": code, "message": message}
    if kind in OUR_CODES:
        return {"code": kind, "message": f"{field}: {problem['msg']}"}
    what = "query parameter" if is_query else "field"
    return {"code": "invalid_field", "message": f"The {what} '{field}' is invalid: {problem['msg']}."}


def validation_error_response(error: ValidationError) -> Response:
    response = jsonify({"error": describe(error)})
    response.status_code = 400
    return response


def _is_list(field: FieldInfo) -> bool:
    annotation = field.annotation
    return get_origin(annotation) is list or any(get_origin(arg) is list for arg in get_args(annotation))


def _collect(model: type[BaseModel], *sources: MultiDict) -> dict[str, Any]:
    """Every name the client sent, as sent (text stays text: `007`, `1e5` and `null` are names,
    not numbers), lists for list fields; names the model does not know are kept so that it can
    refuse them."""
    lists = {field.alias or name for name, field in model.model_fields.items() if _is_list(field)}
    data: dict[str, Any] = {}
    for source in sources:
        for key in source:
            data[key] = source.getlist(key) if key in lists else source.get(key)
    return data


FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _require_a_form_body() -> None:
    """A form read from a JSON body or a raw photo would only report its fields missing, though
    the client sent them: say which body to send instead."""
    if request.mimetype and request.mimetype not in FORM_MEDIA_TYPES:
        raise ServiceError(
            "multipart_required",
            f"This call takes multipart/form-data (one part per field, the photo as a file part: "
            f"curl -F name=value -F image=@photo.jpg), not {request.mimetype}.",
        )


def _parse(kind: str, model: type[BaseModel], path_args: dict[str, Any]) -> BaseModel:
    if kind == "path":
        return model.model_validate(path_args)
    if kind == "query":
        return model.model_validate(_collect(model, request.args))
    if kind == "form":
        _require_a_form_body()
        return model.model_validate(_collect(model, request.form, request.files))
    if kind == "header":
        fields = (field.alias or name for name, field in model.model_fields.items())
        return model.model_validate({key: request.headers[key] for key in fields if key in request.headers})
    return model.model_validate(request.get_json(silent=True))  # body


def validated(view: Callable) -> Callable:
    """Validate the request parts the view declares (`path`, `query`, `form`, `body`, `header`,
    typed with models of web/schemas.py) where this decorator sits: under the authentication,
    rate-limit and Idempotency-Key decorators, so an anonymous request is a 401 whatever its
    shape. flask-openapi3 documents the same annotations; its own parser is not used because
    it decodes every form value as JSON (a name `123` would arrive as a number)."""
    parts = {name: model for name, model in get_type_hints(view).items() if name in _PARTS}

    @wraps(view)
    def call(*args: Any, **path_args: Any) -> Any:
        try:
            values = {name: _parse(name, model, path_args) for name, model in parts.items()}
        except ValidationError as error:
            abort(validation_error_response(error))
        return view(*args, **values)

    call.__delay_validate_request__ = True  # flask-openapi3: validation happens here, not before auth
    return call


_PARTS = ("path", "query", "form", "body", "header")


def validated_part(view: Callable, kind: str) -> BaseModel | None:
    """The request part `kind` (e.g. "query") that `view` declares, validated as @validated does
    (a bad one aborts with the same 400 document); None when the view declares none. For the
    decorators above @validated that must read the request before the view runs: an
    Idempotency-Key's replay reads the retry's `?wait` (web/idempotency.py)."""
    model = get_type_hints(view).get(kind)
    if model is None:
        return None
    try:
        return _parse(kind, model, {})
    except ValidationError as error:
        abort(validation_error_response(error))


def errors(*statuses: int) -> dict[int, type[BaseModel]]:
    """The documented error answers of an operation: every one is the one error document."""
    return dict.fromkeys(statuses, schemas.ErrorBody)


# Answers any authenticated operation may give.
AUTH = (401, 403, 429)


def operation_id(*, bp_name: str = "", name: str = "", path: str = "", method: str = "") -> str:
    """`<resource>_<handler>`, e.g. `persons_enroll`: short, stable, unique (handler names are)."""
    return f"{bp_name}_{name}" if bp_name else name


class Resource(APIBlueprint):
    """An APIBlueprint whose operations may declare that they need no token (`security=[]`):
    flask-openapi3 would give them the blueprint's bearer requirement all the same, and the docs
    page would show them locked."""

    def _collect_openapi_info(self, rule: str, func: Callable, *, security: list | None = None, **options: Any):
        if security is None or security:
            return super()._collect_openapi_info(rule, func, security=security, **options)
        required, self.abp_security = self.abp_security, []
        try:
            return super()._collect_openapi_info(rule, func, security=security, **options)
        finally:
            self.abp_security = required


def resource(name: str, import_name: str, url_prefix: str | None, description: str) -> APIBlueprint:
    """A blueprint of the API: its operations tagged `name`, named `<name>_<handler>`, and
    requiring a bearer token unless an operation says `security=[]` (public: no lock)."""
    return Resource(
        name,
        import_name,
        url_prefix=url_prefix,
        abp_tags=[Tag(name=name, description=description)],
        abp_security=[{"bearer": []}],
        operation_id_callback=operation_id,
    )

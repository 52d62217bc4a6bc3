"""The OpenAPI 3.0 document for API v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)

UUID = {"type": "string", "format": "uuid"}
ERROR = {"$ref": "#/components/responses/Error"}
AUTH_ERRORS = {"401": ERROR, "403": ERROR, "429": ERROR}
UPLOAD_ERRORS = {"400": ERROR, "404": ERROR, "409": ERROR, "413": ERROR, "415": ERROR, "503": ERROR}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _multipart(properties: dict, required: list[str]) -> dict:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": properties, **({"required": required} if required else {})}
            }
        },
    }


WEBHOOK = {"type": "string", "format": "uri", "description": "POSTed the job document when the job ends"}
IMAGE = {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP, at most 10 MB by default"}
GALLERY = {"type": "string", "pattern": r"^[\w.\-]{1,100}$", "default": "default"}
CREDENTIALS = {
    "type": "object",
    "required": ["email", "password"],
    "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
}
PATH_PERSON = {"name": "person_id", "in": "path", "required": True, "schema": UUID}
PATH_JOB = {"name": "job_id", "in": "path", "required": True, "schema": UUID}
WAIT = {
    "name": "wait",
    "in": "query",
    "schema": {"type": "number", "minimum": 0, "maximum": 30},
    "description": "seconds to wait for the job to end before answering",
}

SPEC = {
    "openapi": "3.0.3",
    "info": {
        "title": "Face recognition service",
        "version": "1.0.0",
        "description": "Enroll persons from photos and recognize them in new photos, as asynchronous jobs.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "responses": {
            "Error": {
                "description": "Error",
                **_json({"$ref": "#/components/schemas/Error"}),
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "additionalProperties": True,
                        "description": "some codes carry facts to act on: person_exists and "
                        "photo_enrolled_elsewhere the `person_id`, face_mismatch `best_similarity` and "
                        "`threshold`, duplicate_file `file`, unreferenced_file `files`, enrollment "
                        "failures `faces_detected`",
                    }
                },
            },
            "Tokens": {
                "type": "object",
                "properties": {
                    "access_token": {"type": "string"},
                    "refresh_token": {"type": "string"},
                    "token_type": {"type": "string", "enum": ["Bearer"]},
                    "expires_in": {"type": "integer"},
                },
            },
            "Face": {
                "type": "object",
                "properties": {
                    "id": UUID,
                    "model": {"type": "string"},
                    "det_score": {"type": "number"},
                    "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                    "quality": {"type": "object", "nullable": True, "additionalProperties": {"type": "number"}},
                    "photo_sha256_prefix": {
                        "type": "string",
                        "nullable": True,
                        "description": "first 12 hex digits of the sha256 of the photo the face came from",
                    },
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "Person": {
                "type": "object",
                "properties": {
                    "id": UUID,
                    "name": {"type": "string"},
                    "external_id": {"type": "string", "nullable": True},
                    "metadata": {"type": "object", "description": "free-form, set with PATCH"},
                    "gallery": {"type": "string"},
                    "account_id": {"type": "string", "nullable": True},
                    "consent": {
                        "type": "object",
                        "properties": {
                            "given_at": {"type": "string", "format": "date-time"},
                            "given_by": {"type": "string", "nullable": True},
                        },
                    },
                    "created_at": {"type": "string", "format": "date-time"},
                    "face_count": {"type": "integer"},
                    "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
                },
            },
            "Job": {
                "type": "object",
                "properties": {
                    "id": UUID,
                    "type": {"type": "string", "enum": ["enroll", "recognize", "verify"]},
                    "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "started_at": {"type": "string", "format": "date-time", "nullable": True},
                    "finished_at": {"type": "string", "format": "date-time", "nullable": True},
                    "result": {
                        "type": "object",
                        "nullable": True,
                        "description": "enroll: {person_id, face_id, det_score, bbox, faces_detected, quality, "
                        "duplicate (the same photo was already enrolled for this person), consistency (best "
                        "similarity with the person's earlier faces)}; recognize: {faces: [{bbox, det_score, "
                        "matches: [{person_id, name, external_id, metadata, similarity}]}]}",
                    },
                    "error": {"$ref": "#/components/schemas/Error/properties/error", "nullable": True},
                    "timings_ms": {
                        "type": "object",
                        "nullable": True,
                        "additionalProperties": {"type": "number"},
                        "description": "milliseconds per stage of the worker's run: claim, decode, detect, "
                        "embed, then search (recognize), store (enroll) or compare (verify)",
                    },
                },
            },
        },
    },
    "paths": {
        "/api/v1/auth/login": {
            "post": {
                "summary": "Exchange email and password for tokens",
                "security": [],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["email", "password"],
                            "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "Tokens", **_json({"$ref": "#/components/schemas/Tokens"})},
                    "400": ERROR,
                    "401": ERROR,
                    "429": ERROR,
                },
            }
        },
        "/api/v1/auth/refresh": {
            "post": {
                "summary": "A new access token from a refresh token",
                "responses": {"200": {"description": "Access token"}, "401": ERROR},
            }
        },
        "/api/v1/auth/logout": {
            "post": {
                "summary": "Revoke the presented token",
                "responses": {"204": {"description": "Revoked"}, "401": ERROR},
            }
        },
        "/api/v1/auth/me": {
            "get": {"summary": "The calling account", "responses": {"200": {"description": "Account"}, "401": ERROR}},
            "delete": {
                "summary": "Erase the caller's account, galleries, persons, faces and jobs",
                "responses": {"204": {"description": "Erased"}, "401": ERROR},
            },
        },
        "/api/v1/auth/signup": {
            "post": {
                "summary": "Create a `user` account (if signup is enabled)",
                "security": [],
                "requestBody": {"required": True, **_json(CREDENTIALS)},
                "responses": {
                    "201": {"description": "Account"},
                    "400": ERROR,
                    "403": ERROR,
                    "409": ERROR,
                    "429": ERROR,
                },
            }
        },
        "/api/v1/auth/password": {
            "post": {
                "summary": "Change the password; older tokens are revoked",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["current_password", "new_password"],
                            "properties": {
                                "current_password": {"type": "string"},
                                "new_password": {"type": "string"},
                            },
                        }
                    ),
                },
                "responses": {"200": {"description": "Fresh tokens"}, "400": ERROR, "401": ERROR},
            }
        },
        "/api/v1/auth/me/face": {
            "post": {
                "summary": "Enroll a photo of the caller as its own face profile (asynchronous)",
                "requestBody": _multipart(
                    {"image": IMAGE, "consent": {"type": "string", "enum": ["true"]}, "name": {"type": "string"}},
                    ["image", "consent"],
                ),
                "responses": {"202": {"description": "Accepted"}, **UPLOAD_ERRORS, **AUTH_ERRORS},
            }
        },
        "/api/v1/galleries": {
            "get": {"summary": "The caller's galleries", "responses": {"200": {"description": "List"}, **AUTH_ERRORS}},
            "post": {
                "summary": "Create a gallery",
                "requestBody": {
                    "required": True,
                    **_json({"type": "object", "required": ["name"], "properties": {"name": GALLERY}}),
                },
                "responses": {"201": {"description": "Created"}, "400": ERROR, "409": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/galleries/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": GALLERY}],
            "delete": {
                "summary": "Delete a gallery with its persons and faces",
                "responses": {"204": {"description": "Deleted"}, "404": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/accounts": {
            "get": {
                "summary": "All accounts (admin)",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "A page"}, "400": ERROR, **AUTH_ERRORS},
            }
        },
        "/api/v1/accounts/{account_id}": {
            "parameters": [{"name": "account_id", "in": "path", "required": True, "schema": UUID}],
            "patch": {
                "summary": "Change an account's role (admin)",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["role"],
                            "properties": {"role": {"type": "string", "enum": ["admin", "operator", "user"]}},
                        }
                    ),
                },
                "responses": {"200": {"description": "Account"}, "400": ERROR, "404": ERROR, **AUTH_ERRORS},
            },
            "delete": {
                "summary": "Delete an account and everything it owns (admin)",
                "responses": {"204": {"description": "Deleted"}, "404": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/audit": {
            "get": {
                "summary": "The audit log, newest first (admin)",
                "parameters": [
                    {"name": "actor_id", "in": "query", "schema": UUID},
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                    {"name": "target_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "A page"}, "400": ERROR, **AUTH_ERRORS},
            }
        },
        "/api/v1/persons": {
            "post": {
                "summary": "Register a person from a photo (asynchronous)",
                "requestBody": _multipart(
                    {
                        "name": {"type": "string", "maxLength": 200},
                        "image": IMAGE,
                        "consent": {"type": "string", "enum": ["true"]},
                        "gallery": GALLERY,
                        "external_id": {"type": "string", "maxLength": 200},
                        "webhook_url": WEBHOOK,
                    },
                    ["name", "image", "consent"],
                ),
                "responses": {
                    "202": {
                        "description": "Accepted",
                        **_json({"type": "object", "properties": {"person_id": UUID, "job_id": UUID}}),
                    },
                    **UPLOAD_ERRORS,
                    **AUTH_ERRORS,
                },
            },
            "get": {
                "summary": "List persons of a gallery",
                "parameters": [
                    {"name": "gallery", "in": "query", "schema": GALLERY},
                    {"name": "external_id", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "A page",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
                                    "next_cursor": {"type": "string", "nullable": True},
                                },
                            }
                        ),
                    },
                    "400": ERROR,
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/persons/{person_id}": {
            "parameters": [PATH_PERSON],
            "get": {
                "summary": "A person with its faces",
                "responses": {
                    "200": {"description": "Person", **_json({"$ref": "#/components/schemas/Person"})},
                    "404": ERROR,
                    **AUTH_ERRORS,
                },
            },
            "patch": {
                "summary": "Change a person's name, external_id or metadata",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "maxLength": 200},
                                "external_id": {"type": "string", "maxLength": 200, "nullable": True},
                                "metadata": {"type": "object", "description": "at most 4 KB as JSON by default"},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "Person", **_json({"$ref": "#/components/schemas/Person"})},
                    "400": ERROR,
                    "404": ERROR,
                    "409": ERROR,
                    **AUTH_ERRORS,
                },
            },
            "delete": {
                "summary": "Delete a person and every embedding of it",
                "responses": {"204": {"description": "Deleted"}, "404": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/persons/{person_id}/faces": {
            "parameters": [PATH_PERSON],
            "get": {
                "summary": "The person's enrolled faces, to inspect and repair",
                "responses": {
                    "200": {
                        "description": "Faces",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}}
                                },
                            }
                        ),
                    },
                    "404": ERROR,
                    **AUTH_ERRORS,
                },
            },
            "post": {
                "summary": "Add another photo of a person (asynchronous); it must resemble the person's faces",
                "requestBody": _multipart(
                    {
                        "image": IMAGE,
                        "force": {
                            "type": "string",
                            "enum": ["true", "false"],
                            "description": "enroll even if the face does not resemble the person (audited)",
                        },
                        "webhook_url": WEBHOOK,
                    },
                    ["image"],
                ),
                "responses": {
                    "202": {"description": "Accepted", **_json({"type": "object", "properties": {"job_id": UUID}})},
                    **UPLOAD_ERRORS,
                    **AUTH_ERRORS,
                },
            },
        },
        "/api/v1/persons/{person_id}/faces/{face_id}": {
            "parameters": [PATH_PERSON, {"name": "face_id", "in": "path", "required": True, "schema": UUID}],
            "delete": {
                "summary": "Remove one embedding of a person (a wrong photo)",
                "responses": {"204": {"description": "Deleted"}, "404": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/enrollments": {
            "get": {
                "summary": "The caller's batches, newest first (without their items)",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "{items, next_cursor}"}, "400": ERROR, **AUTH_ERRORS},
            },
            "post": {
                "summary": "Batch enrollment: `images` + JSON `manifest`, or one ZIP `archive` (<person>/<photo>)",
                "requestBody": _multipart(
                    {
                        "images": {"type": "array", "items": IMAGE},
                        "manifest": {"type": "string", "description": 'JSON list of {"file", "name", "external_id"?}'},
                        "archive": {"type": "string", "format": "binary"},
                        "consent": {"type": "string", "enum": ["true"]},
                        "gallery": GALLERY,
                        "force": {"type": "string", "enum": ["true", "false"]},
                        "webhook_url": WEBHOOK,
                    },
                    ["consent"],
                ),
                "responses": {"202": {"description": "Accepted: {batch_id, total}"}, **UPLOAD_ERRORS, **AUTH_ERRORS},
            },
        },
        "/api/v1/enrollments/{batch_id}": {
            "parameters": [{"name": "batch_id", "in": "path", "required": True, "schema": UUID}],
            "get": {
                "summary": "A batch: {status, total, succeeded, failed, items}",
                "responses": {"200": {"description": "Batch"}, "404": ERROR, **AUTH_ERRORS},
            },
        },
        "/api/v1/recognize": {
            "post": {
                "summary": "Recognize every face in a photo (asynchronous)",
                "requestBody": _multipart(
                    {
                        "image": IMAGE,
                        "gallery": GALLERY,
                        "threshold": {"type": "number", "minimum": 0.1, "maximum": 0.95},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": 50},
                        "max_faces": {"type": "integer", "minimum": 1, "maximum": 100},
                        "webhook_url": WEBHOOK,
                    },
                    ["image"],
                ),
                "responses": {
                    "202": {"description": "Accepted", **_json({"type": "object", "properties": {"job_id": UUID}})},
                    **UPLOAD_ERRORS,
                    **AUTH_ERRORS,
                },
            }
        },
        "/api/v1/verify": {
            "post": {
                "summary": "1:1 verification (asynchronous): image_a + image_b, or image + person_id",
                "requestBody": _multipart(
                    {
                        "image_a": IMAGE,
                        "image_b": IMAGE,
                        "image": IMAGE,
                        "person_id": UUID,
                        "threshold": {"type": "number", "minimum": 0.1, "maximum": 0.95},
                    },
                    [],
                ),
                "responses": {
                    "202": {"description": "Accepted", **_json({"type": "object", "properties": {"job_id": UUID}})},
                    **UPLOAD_ERRORS,
                    **AUTH_ERRORS,
                },
            }
        },
        "/api/v1/jobs": {
            "get": {
                "summary": "The caller's jobs, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
                    },
                    {
                        "name": "type",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["enroll", "recognize", "verify"]},
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "A page"}, "400": ERROR, "401": ERROR},
            }
        },
        "/api/v1/jobs/{job_id}": {
            "parameters": [PATH_JOB],
            "get": {
                "summary": "A job's state and result; ?wait=N long-polls up to N seconds",
                "parameters": [WAIT],
                "responses": {
                    "200": {"description": "Job", **_json({"$ref": "#/components/schemas/Job"})},
                    "400": ERROR,
                    "404": ERROR,
                    "401": ERROR,
                },
            },
            "delete": {
                "summary": "Cancel a queued job (it ends failed/cancelled)",
                "responses": {"200": {"description": "Cancelled job"}, "404": ERROR, "409": ERROR, "401": ERROR},
            },
        },
        "/api/v1/jobs/{job_id}/redeliver": {
            "parameters": [PATH_JOB],
            "post": {
                "summary": "Send a finished job's webhook again",
                "responses": {"202": {"description": "Delivery started"}, "404": ERROR, "409": ERROR, "401": ERROR},
            },
        },
        "/api/v1/webhooks/secret": {
            "get": {
                "summary": "The caller's webhook signing secret",
                "responses": {"200": {"description": "Secret"}, "401": ERROR},
            }
        },
        "/api/v1/webhooks/secret/rotate": {
            "post": {
                "summary": "Replace the webhook signing secret",
                "responses": {"200": {"description": "Secret"}, "401": ERROR},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "Metrics"}}}
        },
        "/healthz": {"get": {"summary": "Process alive", "security": [], "responses": {"200": {"description": "OK"}}}},
        "/readyz": {
            "get": {
                "summary": "Database and Redis reachable, schema current",
                "security": [],
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
    },
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "maxLength": 200},
    "description": "the same key with the same request answers the first answer again (kept at least 24 h); "
    "with a different request, 409 idempotency_key_reused",
}
for _path in (
    "/api/v1/auth/me/face",
    "/api/v1/persons",
    "/api/v1/persons/{person_id}/faces",
    "/api/v1/recognize",
    "/api/v1/verify",
    "/api/v1/enrollments",
):
    _post = SPEC["paths"][_path]["post"]
    _post["parameters"] = [*_post.get("parameters", []), IDEMPOTENCY_KEY]
    _post["responses"]["409"] = ERROR

# Every single-photo submission takes ?wait=N: 200 with the finished job when it ends in time.
for _path in (
    "/api/v1/auth/me/face",
    "/api/v1/persons",
    "/api/v1/persons/{person_id}/faces",
    "/api/v1/recognize",
    "/api/v1/verify",
):
    _post = SPEC["paths"][_path]["post"]
    _post["parameters"] = [*_post.get("parameters", []), WAIT]
    _post["responses"]["200"] = {
        "description": "With ?wait=N, the job ended within N seconds: the job document plus the 202 fields",
        **_json({"$ref": "#/components/schemas/Job"}),
    }


@bp.get("/api/v1/openapi.json")
def openapi_json():
    return jsonify(SPEC)

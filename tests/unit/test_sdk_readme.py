"""The SDK's README (clients/python/README.md) names every call of the client, verify and
webhook_secret() included, and every field of a verified webhook event."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

from faceapi_client import FaceAPI, WebhookEvent

README = (Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md").read_text()


def _public_calls() -> list[str]:
    return [name for name, member in inspect.getmembers(FaceAPI) if not name.startswith("_") and callable(member)]


def test_every_call_of_the_client_is_in_the_readme():
    missing = [name for name in _public_calls() if not re.search(rf"\b{name}\(", README)]
    assert not missing, f"clients/python/README.md does not name {missing}"
    assert "`webhook_secret()`" in README and "api.verify(" in README


def test_every_field_of_a_webhook_event_is_described():
    section = README.split("### Webhook events", 1)[1]
    fields = [field.name for field in dataclasses.fields(WebhookEvent)]
    properties = [name for name, value in vars(WebhookEvent).items() if isinstance(value, property)]
    for name in fields + properties:
        assert f"| `{name}` |" in section, name

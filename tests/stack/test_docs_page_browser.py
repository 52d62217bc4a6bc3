"""The docs page's "Try it out" in a real browser (Playwright, Debian's Chromium): an upload to
POST /api/v1/persons with every optional field left as the page shows it sends no `null`, is
accepted, and stores none (before: `null` in each, then the sample "string")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from domain.models import Person
from tests import images
from tests.conftest import make_account

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is missing: `apt-get install -y chromium` (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def _is_enrollment(url: str) -> bool:
    return url.split("?")[0].endswith("/api/v1/persons")


def _row(block, name: str):
    """A form field's row (Swagger UI marks request-body fields and parameters differently)."""
    return block.locator(f"tr[data-property-name='{name}'], tr[data-param-name='{name}']").first


def _fill(block, name: str, value: str) -> None:
    row = _row(block, name)
    if row.locator("select").count():
        row.locator("select").select_option(value)
    else:
        row.locator("input, textarea").first.fill(value)


def _open_operation(page, operation_id: str):
    """The operation's block, expanded, in "Try it out" mode."""
    block = page.locator(f"[id$='-{operation_id}']").first
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    return block


def test_try_it_out_sends_an_upload_without_null_fields(browser, live_server, db, tmp_path):
    email, password = make_account("admin")
    token = _login_over_http(live_server.url, email, password)
    photo = tmp_path / "tom.png"
    photo.write_bytes(images.tom_hanks())

    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    sent: list = []
    page.on("request", lambda request: sent.append(request) if _is_enrollment(request.url) else None)
    page.goto("/api/v1/docs/swagger")
    page.wait_for_function("() => window.ui && window.ui.specSelectors.specStr().length > 0")
    page.evaluate("token => window.ui.preauthorizeApiKey('bearer', token)", token)

    block = _open_operation(page, "persons_enroll")
    _fill(block, "name", "Tom Hanks")
    _fill(block, "consent", "true")
    _row(block, "image").locator("input[type=file]").set_input_files(str(photo))
    with page.expect_response(lambda response: _is_enrollment(response.url)) as answered:
        block.locator("button.execute").click()
    response = answered.value
    status, answer = response.status, response.json()
    body = sent[-1].post_data_buffer or b""
    context.close()

    assert b"null" not in body, body[:2000]
    for left_empty in (b"external_id", b"webhook_url", b"target_face"):  # not "string" either
        assert b'name="' + left_empty + b'"' not in body, body[:2000]
    assert status == 202, answer
    db.rollback()
    person = db.execute(select(Person).where(Person.id == answer["person_id"])).scalar_one()
    assert person.external_id is None


def _login_over_http(base: str, email: str, password: str) -> str:
    import requests

    answer = requests.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    return answer.json()["access_token"]

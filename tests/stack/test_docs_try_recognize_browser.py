"""The docs page's "Try it out" for POST /api/v1/recognize in a real browser (Playwright, Debian's
Chromium): the operation, whose form takes one photo or several, opens without a script error and
an upload of t1.jpg is accepted (before: Swagger UI failed to draw the form, no "Try it out")."""

from __future__ import annotations

import requests

from tests import images
from tests.conftest import make_account
from tests.stack.test_docs_page_browser import WAIT_MS, _fill, _login_over_http, _open_operation, _row, browser

__all__ = ["browser"]  # the module's Chromium, shared with the enrollment's Try it out test


def _is_recognition(url: str) -> bool:
    return url.split("?")[0].endswith("/api/v1/recognize")


def test_try_it_out_uploads_a_photo_to_recognize(browser, live_server, tmp_path):
    email, password = make_account("admin")
    token = _login_over_http(live_server.url, email, password)
    requests.post(
        f"{live_server.url}/api/v1/galleries",
        json={"name": "tried"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).raise_for_status()
    photo = tmp_path / "t1.jpg"
    photo.write_bytes(images.group_photo())

    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.on("console", lambda message: script_errors.append(message.text) if message.type == "error" else None)
    page.goto("/api/v1/docs/swagger")
    page.wait_for_function("() => window.ui && window.ui.specSelectors.specStr().length > 0")
    page.evaluate("token => window.ui.preauthorizeApiKey('bearer', token)", token)

    block = _open_operation(page, "recognition_recognize")
    _fill(block, "gallery", "tried")
    _row(block, "image").locator("input[type=file]").set_input_files(str(photo))
    with page.expect_response(lambda response: _is_recognition(response.url)) as answered:
        block.locator("button.execute").click()
    status, answer = answered.value.status, answered.value.json()
    context.close()

    assert status == 202, answer
    assert not script_errors, script_errors

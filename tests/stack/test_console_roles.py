"""The console refuses an action with the API's own role rule and message: the role the account
holds, the role the action needs and who can change it (domain/callers.require_role)."""

from __future__ import annotations

from tests.conftest import bearer, login
from tests.stack.test_console_browser import browse, browser, signed_in_page, team  # noqa: F401

NEEDED = "Your account has the role 'user'; this action needs admin or operator."


def test_a_refused_page_names_the_role_held_and_the_role_needed(client, browse, team):  # noqa: F811
    page = signed_in_page(browse, team["viewer"])
    page.goto("/console/enroll")
    assert page.get_by_text(NEEDED).is_visible()
    assert "change roles" in page.inner_text("main")

    refused = page.evaluate(
        """async () => {
             const token = document.querySelector('meta[name=csrf-token]').content;
             const response = await fetch('/console/enroll/batch', {
               method: 'POST', headers: {'X-CSRFToken': token, Accept: 'application/json'}});
             return {status: response.status, body: await response.json()};
           }"""
    )
    assert refused["status"] == 403
    error = refused["body"]["error"]
    assert (error["role"], error["required_roles"]) == ("user", ["admin", "operator"])
    headers = bearer(login(client, *team["viewer"])["access_token"])
    api = client.post("/api/v1/enrollments", data={}, headers=headers, content_type="multipart/form-data")
    assert api.status_code == 403 and api.get_json()["error"]["message"] == error["message"]

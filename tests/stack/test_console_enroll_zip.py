"""The console's enroll page with a ZIP: a `multiple_faces` photo inside the archive shows its faces
to choose from, as a loose photo does; the browser reads the photo from the archive it still has
(the service keeps no photo once its item has ended)."""

from __future__ import annotations

import uuid

from tests.conftest import zip_archive
from tests.stack.test_console_browser import (  # noqa: F401
    browse,
    browser,
    face_photo,
    signed_in_page,
    team,
    two_faces_photo,
)


def test_choosing_the_face_of_a_multiple_faces_photo_inside_a_zip(browse, team, tmp_path):  # noqa: F811
    archive = tmp_path / "people.zip"
    archive.write_bytes(zip_archive({"Gil/1.jpg": face_photo(0), "Fay/group.jpg": two_faces_photo()}))
    page = signed_in_page(browse, team["operator"])
    page.goto("/console/enroll")
    page.fill("input[name=gallery]", f"zip-{uuid.uuid4().hex[:6]}")
    page.wait_for_load_state()  # the page's deferred scripts listen
    page.set_input_files("#pick-files", str(archive))
    page.check("input[name=consent]")
    page.click("#enroll-submit")
    page.wait_for_selector("#batch[data-finished=true]")
    assert "multiple_faces" in page.inner_text("#batch-items")
    boxes = page.locator("figure.picker button.box")
    boxes.first.wait_for(timeout=15_000)
    assert boxes.count() == 2
    assert page.get_attribute("figure.picker img", "alt").startswith("group.jpg:")
    # The right-hand face of the photo (face 6 of t1.jpg) is Fay.
    rightmost = max(range(2), key=lambda i: boxes.nth(i).bounding_box()["x"])
    boxes.nth(rightmost).click()
    page.get_by_text("enrolled from face").wait_for()
    assert page.locator("#batch-items tr.status-succeeded").count() == 2

"""The console in a real browser: Playwright drives Debian's Chromium against the app served over
HTTP with the real worker. The tests run in file order on one organisation: a folder is enrolled
through the page, then its persons are looked at, recognized in the group photo and repaired.

Every page of every test is watched: a request to anywhere but the app's origin is aborted and
fails the test, and so do a script error, a CSP violation and any dialog (an injected alert()).
Screenshots go to CONSOLE_SCREENSHOTS (docs/console for the README's), else a temporary folder.
Only the insightface package's sample photos are used."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_account
from tests.images import another_photo, crop, group_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 90_000
# Where t1.jpg's six faces are (x1, y1, x2, y2), left to right.
FACES = [
    (55.6, 260.8, 168.6, 397.9),
    (270.0, 144.9, 371.9, 270.3),
    (463.5, 266.5, 572.7, 415.4),
    (745.3, 342.2, 847.3, 480.1),
    (906.0, 59.5, 1011.1, 206.3),
    (1130.3, 272.8, 1227.3, 400.6),
]
ENROLLED = {"Ann": 0, "Ben": 1, "Cid": 2, "Dan": 3}  # folder name -> face of t1.jpg
XSS_NAME = "<img src=x onerror=alert(1)>"
LOGIN_PAGE = re.compile(r".*/console/login(\?.*)?$")


def face_photo(index: int, margin: float = 0.4) -> bytes:
    x1, y1, x2, y2 = FACES[index]
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return crop(group_photo(), (int(x1 - dx), int(y1 - dy), int(x2 + dx), int(y2 + dy)))


def two_faces_photo() -> bytes:
    """Faces 5 and 6 of t1.jpg, of about the same size: the service cannot tell whose photo it is."""
    return crop(group_photo(), (870, 20, 1260, 440))


@pytest.fixture(scope="module")
def screenshots(data_dir: Path) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or data_dir / "console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `apt-get install -y chromium` (make test does it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def team(services) -> dict[str, tuple[str, str]]:
    operator = make_account("operator")
    return {
        "operator": operator,
        "admin": make_account("admin", colleague_of=operator[0]),
        "viewer": make_account("user", colleague_of=operator[0]),
    }


@pytest.fixture(scope="module")
def gallery() -> str:
    return f"team-{uuid.uuid4().hex[:6]}"


class Watched:
    """A browser context whose pages may reach only the app, run no script in error and open no dialog."""

    def __init__(self, browser, origin: str, viewport: dict[str, int]):
        self.origin = origin
        self.outside: list[str] = []
        self.problems: list[str] = []
        self.context = browser.new_context(viewport=viewport, base_url=origin)
        self.context.set_default_timeout(WAIT_MS)
        self.context.route("**/*", self._only_the_origin)
        self.context.on("page", self._watch)

    def _only_the_origin(self, route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _watch(self, page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    def new_page(self):
        return self.context.new_page()

    def close(self) -> None:
        self.context.close()
        assert not self.outside, f"requests left the origin: {self.outside}"
        assert not self.problems, self.problems


@pytest.fixture()
def browse(browser, live_server) -> Iterator:
    """Open watched browser contexts (1280x800 unless told); each is checked when the test ends."""
    opened: list[Watched] = []

    def open_context(width: int = 1280, height: int = 800) -> Watched:
        opened.append(Watched(browser, live_server.url, {"width": width, "height": height}))
        return opened[-1]

    yield open_context
    for watched in opened:
        watched.close()


def shot(page, path: Path) -> None:
    """A full-page PNG, in 256 colours: small enough for the repository's docs/console."""
    from PIL import Image

    page.screenshot(path=path, full_page=True)
    with Image.open(path) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def sign_in(page, account: tuple[str, str]) -> None:
    page.goto("/console/login")
    page.fill("input[name=email]", account[0])
    page.fill("input[name=password]", account[1])
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")


def signed_in_page(browse, account: tuple[str, str], **size: int):
    page = browse(**size).new_page()
    sign_in(page, account)
    return page


def open_person(page, gallery: str, name: str) -> None:
    page.goto(f"/console/galleries/{gallery}")
    page.get_by_role("link", name=re.compile(f"^Face of {re.escape(name)}|^{re.escape(name)}$")).first.click()
    page.wait_for_url("**/console/persons/*")


def face_count(page) -> int:
    return page.locator("ul.faces > li.face").count()


def test_sign_in_by_keyboard_and_out(browse, team, screenshots):
    page = browse().new_page()
    page.goto("/console/")
    page.wait_for_url(LOGIN_PAGE)
    shot(page, screenshots / "login.png")
    # The email field has the focus: a keyboard alone signs in.
    page.keyboard.type(team["operator"][0])
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    page.get_by_text("Invalid email or password.").wait_for()
    page.fill("input[name=password]", team["operator"][1])
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/")
    assert team["operator"][0] in page.inner_text("header")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(LOGIN_PAGE)
    page.goto("/console/")
    page.wait_for_url(LOGIN_PAGE)


def test_a_request_without_the_csrf_token_is_refused(browse, team):
    page = signed_in_page(browse, team["operator"])
    status = page.evaluate(
        """async () => (await fetch('/console/api-keys', {method: 'POST', body: new URLSearchParams({name: 'x'}),
             headers: {Accept: 'application/json'}})).status"""
    )
    assert status == 400


def test_enrolling_a_folder_through_the_page(browse, team, gallery, screenshots, tmp_path):
    folder = tmp_path / "team"
    for name, index in ENROLLED.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "1.jpg").write_bytes(face_photo(index))
    (folder / "Ann" / "2.jpg").write_bytes(another_photo(face_photo(0)))
    page = signed_in_page(browse, team["operator"])
    page.get_by_role("link", name="Enroll", exact=True).click()
    page.fill("input[name=gallery]", gallery)
    page.wait_for_load_state()  # the page's deferred scripts listen
    page.set_input_files("#pick-folder", str(folder))
    page.get_by_text("5 photo(s) of 4 person(s).").wait_for()
    page.check("input[name=consent]")
    page.click("#enroll-submit")
    page.locator("#batch").wait_for()
    seen = []
    while page.get_attribute("#batch", "data-finished") != "true":
        seen.append(page.evaluate("document.getElementById('batch-progress').value"))
        page.wait_for_timeout(200)
    assert page.evaluate("document.getElementById('batch-progress').value") == 5
    assert min(seen, default=5) < 5, "the progress was never seen before the end"
    assert page.locator("#batch-items tr.status-succeeded").count() == 5
    assert "5 of 5 done: 5 enrolled, 0 failed" in page.inner_text("#batch-summary")
    shot(page, screenshots / "enroll.png")


def test_the_gallery_and_person_pages_show_crops(browse, team, gallery, screenshots):
    page = signed_in_page(browse, team["operator"])
    shot(page, screenshots / "dashboard.png")
    page.get_by_role("link", name=gallery).click()
    cards = page.locator("ul.grid > li.card")
    assert cards.count() == len(ENROLLED)
    images = page.locator("ul.grid img")
    assert all(images.nth(i).get_attribute("loading") == "lazy" for i in range(images.count()))
    page.wait_for_function(
        "() => [...document.querySelectorAll('ul.grid img')].every(i => i.complete && i.naturalWidth)"
    )
    shot(page, screenshots / "gallery.png")
    page.fill("input[name=q]", "ci")
    page.wait_for_function("() => document.querySelectorAll('ul.grid > li.card').length === 1")
    assert "Cid" in page.inner_text("ul.grid")

    open_person(page, gallery, "Ann")
    assert face_count(page) == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('ul.faces img')].every(i => i.complete && i.naturalWidth === 112)"
    )
    assert "Detection" in page.inner_text("ul.faces") and "Pose" in page.inner_text("ul.faces")
    shot(page, screenshots / "person.png")


def test_at_phone_width_nothing_overflows(browse, team, gallery, screenshots):
    page = signed_in_page(browse, team["operator"], width=390, height=844)
    for path in ("/console/", f"/console/galleries/{gallery}", "/console/enroll", "/console/recognize"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    open_person(page, gallery, "Ann")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "person page"
    page.goto(f"/console/galleries/{gallery}")
    shot(page, screenshots / "gallery-phone.png")


def test_choosing_the_face_of_a_multiple_faces_photo(browse, team, gallery, screenshots, tmp_path):
    photo = tmp_path / "Fay.jpg"
    photo.write_bytes(two_faces_photo())
    page = signed_in_page(browse, team["operator"])
    page.goto("/console/enroll")
    page.fill("input[name=gallery]", gallery)
    page.wait_for_load_state()  # the page's deferred scripts listen
    page.set_input_files("#pick-files", str(photo))
    page.check("input[name=consent]")
    page.click("#enroll-submit")
    page.wait_for_selector("#batch[data-finished=true]")
    assert "multiple_faces" in page.inner_text("#batch-items")
    boxes = page.locator("figure.picker button.box")
    boxes.first.wait_for()
    assert boxes.count() == 2
    shot(page, screenshots / "enroll-multiple-faces.png")
    # The right-hand face of the photo (face 6 of t1.jpg) is Fay.
    rightmost = max(range(2), key=lambda i: boxes.nth(i).bounding_box()["x"])
    boxes.nth(rightmost).click()
    page.get_by_text("enrolled from face").wait_for()


def test_recognize_draws_the_right_names_on_the_group_photo(browse, team, gallery, screenshots, tmp_path):
    photo = tmp_path / "group.jpg"
    photo.write_bytes(group_photo())
    page = signed_in_page(browse, team["operator"])
    page.get_by_role("link", name="Recognize", exact=True).click()
    page.select_option("select[name=gallery]", gallery)
    page.wait_for_load_state()  # the page's deferred scripts listen
    page.set_input_files("#pick-photo", str(photo))
    page.wait_for_function("() => document.querySelectorAll('#photo .tag').length === 6")
    summary = page.inner_text("#result-summary")
    assert "6 face(s), 5 recognized" in summary and "threshold" in summary
    expected = {**{name: FACES[index] for name, index in ENROLLED.items()}, "Fay": FACES[5]}
    tags = page.locator("#photo .tag")
    image = page.locator("#photo-img").bounding_box()
    scale = image["width"] / 1280
    for i in range(tags.count()):
        tag, box = tags.nth(i).inner_text(), page.locator("#photo .box").nth(i).bounding_box()
        x = (box["x"] - image["x"]) / scale
        name = next((n for n, face in expected.items() if abs(face[0] - x) < 8), None)
        assert tag.startswith(name) if name else tag == "unknown", (tag, x)
    shot(page, screenshots / "recognize.png")

    # The one stranger (face 5) is not Ann: added to her, the job refuses the face, and says why.
    page.locator("#photo .box.unknown").click()
    page.check("#enroll-face [name=mode][value=existing]")
    page.fill("#enroll-face [name=person]", "Ann")
    page.click("#enroll-face button[type=submit]")
    page.get_by_text(re.compile("^Not enrolled: .+")).wait_for()
    # Enrolled from here as a new person instead, from the same photo.
    page.check("#enroll-face [name=mode][value=new]")
    page.fill("#enroll-face [name=name]", "Eli")
    page.check("#enroll-face [name=consent]")
    page.click("#enroll-face button[type=submit]")
    page.get_by_text("Enrolled:").wait_for()


def test_moving_and_deleting_a_face(browse, team, gallery):
    page = signed_in_page(browse, team["operator"])
    open_person(page, gallery, "Ann")
    ann = page.url
    page.locator("ul.faces > li.face").nth(1).locator("input[name=target]").fill("Ben")
    page.locator("ul.faces > li.face").nth(1).get_by_role("button", name="Move").click()
    page.get_by_text("The face was moved to Ben.").wait_for()
    assert face_count(page) == 1
    open_person(page, gallery, "Ben")
    assert face_count(page) == 2
    page.get_by_role("button", name="Delete face 2").click()
    page.get_by_text("The face was deleted.").wait_for()
    assert face_count(page) == 1
    page.goto(ann)
    assert face_count(page) == 1


def test_merging_persons(browse, team, gallery):
    page = signed_in_page(browse, team["operator"])
    open_person(page, gallery, "Dan")
    page.fill("form.merge input[name=target]", "Cid")
    page.get_by_role("button", name="Merge").click()
    page.get_by_text("The persons were merged.").wait_for()
    assert page.inner_text("h1") == "Cid" and face_count(page) == 2
    page.goto(f"/console/galleries/{gallery}?q=Dan")
    assert "Nobody matches" in page.inner_text("#persons")


def test_a_viewer_sees_no_actions_and_a_forged_action_is_refused(browse, team, gallery):
    page = signed_in_page(browse, team["viewer"])
    assert page.locator("main button, main form[method=post]").count() == 0
    for label in ("Enroll", "Recognize", "API keys"):
        assert page.get_by_role("link", name=label).count() == 0
    page.goto("/console/enroll")
    assert page.get_by_text("Your account has the role 'user'; this action needs admin or operator.").is_visible()
    status = page.evaluate(
        """async () => {
             const token = document.querySelector('meta[name=csrf-token]').content;
             const body = new URLSearchParams({csrf_token: token, name: 'forged'});
             return (await fetch('/console/api-keys', {method: 'POST', body})).status;
           }"""
    )
    assert status == 403


def test_another_organisations_ids_answer_404(browse, team, gallery):
    owner = signed_in_page(browse, team["operator"])
    open_person(owner, gallery, "Cid")
    person_url = owner.url
    stranger = signed_in_page(browse, make_account("admin"))
    for url in (person_url, f"/console/galleries/{gallery}", person_url + "/faces/" + str(uuid.uuid4()) + "/crop"):
        response = stranger.goto(url)
        assert response.status == 404, url


def test_a_name_that_is_markup_stays_text(browse, team, gallery):
    page = signed_in_page(browse, team["operator"])
    open_person(page, gallery, "Ben")
    page.fill("form.edit input[name=name]", XSS_NAME)
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    assert page.inner_text("h1") == XSS_NAME
    page.goto(f"/console/galleries/{gallery}")
    assert XSS_NAME in page.inner_text("ul.grid")
    assert page.locator("img[src=x]").count() == 0
    # Watched: an alert() would have been recorded as a dialog and failed the test.


def test_admin_pages(browse, team, screenshots):
    page = signed_in_page(browse, team["admin"])
    page.get_by_role("link", name="API keys").click()
    page.fill("form.create-key input[name=name]", "ingest")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-key").inner_text()
    assert secret.startswith("fk_")
    page.goto("/console/api-keys")
    assert secret not in page.content(), "a key is shown once"
    page.get_by_role("button", name="Revoke ingest").click()
    assert "ingest" not in page.inner_text("table")
    page.get_by_role("link", name="Audit log").click()
    assert "api_key.revoke" in page.inner_text("table.audit")
    shot(page, screenshots / "audit.png")
    page.get_by_role("link", name="Jobs").click()
    assert "enroll" in page.inner_text("table.jobs")
    shot(page, screenshots / "jobs.png")


def test_screenshots_were_saved(screenshots):
    names = {path.name for path in screenshots.glob("*.png")}
    assert {"login.png", "dashboard.png", "gallery.png", "person.png", "enroll.png", "recognize.png"} <= names

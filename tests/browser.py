"""
Browser tests of the web UI: a real farm (master, scheduler, one agent)
per test module, one headless Chromium per module and a fresh browser
context (cookies, storage) per test, with Playwright's sync API.

The browser is the system's Chromium (Debian's ``chromium`` package);
Playwright's own browser downloads are never used. Without it, or without
the ``playwright`` package, the tests skip and say why.

A test module loads the fixtures with ``pytest_plugins = ["browser"]``
and imports the helpers; pytest need not rewrite this module's asserts
(PYTEST_DONT_REWRITE), since the test module imports it first.
"""

import contextlib
import os
import shutil
from pathlib import Path

import pytest
from farmlib import Farm

from pyfarm.core.client import Client

playwright_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser tests need the playwright package "
           "(pip install -r requirements-dev.txt)")

ROOT = Path(__file__).resolve().parent.parent
#: Where the user guide's screenshots live. The screenshot test writes
#: them there when ``PYFARM_UPDATE_SCREENSHOTS=1`` (a run that changed the
#: pages' looks), else into its temporary folder, so that running the
#: tests leaves the working tree as it was.
SCREENSHOTS = ROOT / "pyfarm-docs" / "_static" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("PYFARM_UPDATE_SCREENSHOTS") == "1"
#: A laptop screen: what the pages must work on; and a larger one.
VIEWPORT = {"width": 1366, "height": 768}
LARGE = {"width": 1440, "height": 900}
#: Users of the web UI: an admin (a wrangler) and an artist.
ADMIN = ("wrangler", "wrangler-secret-1")
ARTIST = ("anna", "anna-secret-12")
#: How long to wait for the page to show what the farm did (ms).
FARM_MS = 30_000

expect = playwright_api.expect


def chromium_path():
    """Return the system Chromium's path, or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def ui_farm(request, tmp_path_factory):
    """A farm on SQLite: master, scheduler and one agent of two slots,
    with the web UI users :data:`ADMIN` and :data:`ARTIST` (and an API
    client for each: ``farm.client`` is the admin's, ``farm.artist``
    the artist's)."""
    root = tmp_path_factory.mktemp("ui-farm")
    farm = Farm(root, f"sqlite:///{root / 'pyfarm.sqlite'}")
    failed_before = request.session.testsfailed
    started = False
    try:
        farm.start_master()
        # The agent registers while the users are made.
        farm.start_agent("render-01", cpus=2, tags=["linux", "gpu"])
        farm.run("pyfarm-master", "users", "create", ADMIN[0], "--role",
                 "admin", "--password", ADMIN[1])
        farm.run("pyfarm-master", "users", "create", ARTIST[0], "--role",
                 "user", "--password", ARTIST[1])
        farm.artist = Client(farm.url, farm.run(
            "pyfarm-master", "tokens", "create", ARTIST[0]).strip())
        farm.wait_for_agents(1)
        started = True
        yield farm
    finally:
        if not started or request.session.testsfailed > failed_before:
            farm.dump_logs()
        farm.stop()
        for client in (getattr(farm, "client", None),
                       getattr(farm, "artist", None)):
            if client is not None:
                client.close()


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on PATH: install Debian's 'chromium' "
                    "package to run the browser tests")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, ui_farm):
    """A page in a fresh context (no cookies) on the farm's master.

    JavaScript errors in the page fail the test.
    """
    context = chromium.new_context(base_url=ui_farm.url, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    errors = []
    with contextlib.closing(context):
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
    assert not errors, f"JavaScript errors in the page: {errors}"


def log_in(page, user=ADMIN, path="/"):
    """Log in through the login form; end on ``path``."""
    page.goto("/login")
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    if path != "/":
        page.goto(path)
    return page


def command_job(client, title, script, start=1, end=1, **fields):
    """Submit a ``command`` job running ``sh -c script`` for each frame."""
    return client.submit_job(title=title, jobtype="command", start=start,
                             end=end, data={"argv": ["sh", "-c", script]},
                             **fields)


def job_row(page, job_id):
    """The jobs page's row of a job."""
    return page.locator(f"#job-{job_id}")


def mark_page(page):
    """Leave a mark in the page's window: it vanishes if it reloads."""
    page.evaluate("window.pyfarmTestMark = 'not reloaded'")


def assert_not_reloaded(page):
    """Fail if the page was loaded again since :func:`mark_page`."""
    assert page.evaluate("window.pyfarmTestMark") == "not reloaded", \
        "the page reloaded; it should have updated itself"


def screenshot(page, name, folder, full_page=False):
    """Save the user guide's screenshot ``name`` (a PNG) into the docs
    (see :data:`UPDATE_SCREENSHOTS`) or ``folder``; return its path."""
    folder = SCREENSHOTS if UPDATE_SCREENSHOTS else folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page,
                    animations="disabled", caret="hide")
    return path

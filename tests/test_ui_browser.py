"""
The web UI in a real browser (headless Chromium) on a real farm: a
master, the scheduler and one agent as processes (see ``browser.py``).

The pages must follow the farm by themselves: after an action the tests
wait for what the page shows, never reload it. They also write the user
guide's screenshots (``pyfarm-docs/_static/screenshots``).
"""

import re
import time

import pytest
from browser import (
    ADMIN,
    ARTIST,
    FARM_MS,
    LARGE,
    VIEWPORT,
    assert_not_reloaded,
    command_job,
    expect,
    job_row,
    log_in,
    mark_page,
    screenshot,
)
from farmlib import wait_until

pytestmark = pytest.mark.e2e
pytest_plugins = ["browser"]

#: What the submitted job prints for each frame.
RENDER = ("echo Rendering frame {frame} of sq010_sh0040; sleep 1; "
          "echo Saved /renders/sq010_sh0040/lighting_v012.{frame}.exr")


def test_log_in_and_out(page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill(ADMIN[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong password")
    expect(page.get_by_label("User name")).to_have_value(ADMIN[0])

    log_in(page)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_submit_a_job_and_watch_it_finish(page, ui_farm):
    log_in(page, ARTIST, "/submit")
    page.get_by_role("link", name="Submit a command job").click()
    page.get_by_label("Title").fill("sq010_sh0040 lighting v012")
    page.locator('[data-field="argv"] textarea').fill(
        "\n".join(["sh", "-c", RENDER]))
    page.locator("#f-start").fill("1")
    page.locator("#f-end").fill("6")
    page.get_by_role("button", name="Submit job").click()

    # The job's page, which follows the job without being reloaded.
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    mark_page(page)
    expect(page.get_by_text(f"Job {job_id} submitted (6 frames)")) \
        .to_be_visible()
    head = page.locator("#job-head")
    assert head.get_attribute("data-state") in ("queued", "running")
    expect(head).to_have_attribute("data-state", "done", timeout=FARM_MS)
    expect(page.locator("#frame-grid [data-t]")).to_have_count(6)
    expect(page.locator("#job-tasks tr[data-state=done]")).to_have_count(6)
    assert_not_reloaded(page)
    job = ui_farm.client.job(job_id)
    assert job["user"] == ARTIST[0]
    assert job["data"] == {"argv": ["sh", "-c", RENDER]}

    # A frame's log, from the grid.
    task = page.locator("#job-tasks tr[data-frame='3']")
    page.locator(f"#frame-grid [data-t='{task.get_attribute('data-task')}']")\
        .click()
    viewer = page.locator("#log-viewer")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_role("heading")).to_contain_text("frame 3")
    expect(page.locator("#log-text")).to_contain_text(
        "Rendering frame 3 of sq010_sh0040")
    expect(page.locator("#log-text")).to_contain_text(
        "Saved /renders/sq010_sh0040/lighting_v012.3.exr")
    page.get_by_role("button", name="Close").click()
    expect(viewer).to_be_hidden()

    # The jobs page lists it as done.
    page.get_by_role("link", name="Jobs").first.click()
    expect(job_row(page, job_id)).to_have_attribute("data-state", "done")


def test_pause_stops_handing_out_frames_and_resume_goes_on(page, ui_farm):
    client = ui_farm.client
    log_in(page, ADMIN)
    job = command_job(client, "sq010_sh0050 fx v004", "sleep 1.5", end=6)
    page.goto(f"/jobs/{job['id']}")
    mark_page(page)
    head = page.locator("#job-head")
    wait_until(lambda: client.job(job["id"])["tasks"]["running"], 30,
               message="a frame to run")
    head.get_by_role("button", name="Pause").click()
    expect(head).to_have_attribute("data-state", "paused")
    expect(page.get_by_text(f"Job {job['id']} paused")).to_be_visible()

    # The frames running go on to their end; no other starts.
    def settled():
        states = [task["state"] for task in client.tasks(job["id"])]
        if {"assigned", "running"} & set(states):
            return None
        return states
    before = wait_until(settled, 30, message="the running frames to end")
    assert "queued" in before
    time.sleep(2)  # several syncs and scheduler passes
    assert [task["state"] for task in client.tasks(job["id"])] == before
    assert client.job(job["id"])["state"] == "paused"
    expect(page.locator("#job-tasks tr[data-state=queued]")).to_have_count(
        before.count("queued"))

    head.get_by_role("button", name="Resume").click()
    expect(head).to_have_attribute("data-state", "done", timeout=FARM_MS)
    expect(page.locator("#job-tasks tr[data-state=done]")).to_have_count(6)
    assert_not_reloaded(page)


def test_rerun_the_failed_frames_of_a_job_from_the_jobs_page(
        page, ui_farm, tmp_path):
    # The command fails until the file exists: the first run fails for
    # good (no retries), the rerun succeeds.
    fixed = tmp_path / "fixed"
    job = command_job(
        ui_farm.artist, "sq010_sh0060 comp v002",
        f"echo compositing frame {{frame}}; test -e {fixed} || exit 3",
        end=3, requeue=0)
    assert ui_farm.client.wait_for_job(job["id"], 30, poll=0.2)["state"] \
        == "failed"
    log_in(page, ADMIN)
    mark_page(page)
    row = job_row(page, job["id"])
    expect(row).to_have_attribute("data-state", "failed")
    fixed.touch()
    row.get_by_role("checkbox").check()
    expect(page.get_by_text("1 job selected")).to_be_visible()
    page.get_by_role("button", name="Rerun failed").click()
    expect(page.get_by_text("Failed frames of 1 job requeued")) \
        .to_be_visible()
    expect(row).to_have_attribute("data-state", "done", timeout=FARM_MS)
    assert_not_reloaded(page)
    tasks = ui_farm.client.tasks(job["id"])
    assert [task["attempt"] for task in tasks] == [2, 2, 2]


def test_screenshots_of_a_busy_farm(page, ui_farm, tmp_path):
    """A farm with jobs in every state: the user guide's screenshots."""
    admin, artist = ui_farm.client, ui_farm.artist
    for name, priority in (("lighting", 20), ("fx", 10), ("comp", 30)):
        admin.request("POST", "/jobqueues/",
                      json={"name": name, "priority": priority})
    broken = command_job(admin, "sq030_sh0010 lighting v001",
                         "echo scene not found >&2; exit 3", end=2,
                         requeue=0, jobqueue="lighting")
    admin.wait_for_job(broken["id"], 30, poll=0.2)
    # The hero shot goes first (priority 50); the other jobs wait for it.
    busy = command_job(
        artist, "sq020_sh0110 fx v003",
        "echo Rendering frame {frame} of sq020_sh0110 with 16 threads; "
        "echo Loading sq020_sh0110_fx_v003.blend; sleep 1.5; "
        "test {frame} -ne 3 || { echo Out of memory >&2; exit 3; }; "
        "echo Saved /renders/sq020_sh0110/fx_v003.{frame}.exr",
        end=24, requeue=0, priority=50, jobqueue="fx", tags=["hero"])
    waiting = command_job(admin, "sq020_sh0120 comp v001", "sleep 1",
                          end=48, jobqueue="comp")
    held = command_job(artist, "sq020_sh0110 fx v003 denoise", "sleep 1",
                       end=24, jobqueue="fx", parents=[busy["id"]])
    admin.pause(held["id"])

    def busy_enough():
        counts = admin.job(busy["id"])["tasks"]
        return counts["done"] >= 4 and counts["failed"] >= 1
    wait_until(busy_enough, 60, interval=0.2, message="a busy farm")

    log_in(page, ADMIN)
    for job, state in ((busy, "running"), (waiting, "queued"),
                       (held, "paused"), (broken, "failed")):
        expect(job_row(page, job["id"])).to_have_attribute(
            "data-state", state)
    shots = [screenshot(page, "jobs.png", tmp_path, full_page=True)]

    page.set_viewport_size(LARGE)
    page.goto(f"/jobs/{busy['id']}")
    task = page.locator("#job-tasks tr[data-frame='2']")
    page.locator(f"#frame-grid [data-t='{task.get_attribute('data-task')}']")\
        .click()
    expect(page.locator("#log-text")).to_contain_text("Saved /renders")
    # The grid above the open log, as people see it first.
    page.evaluate("window.scrollTo(0, 0)")
    shots.append(screenshot(page, "job-detail.png", tmp_path))
    page.set_viewport_size(VIEWPORT)

    page.get_by_role("link", name="Agents").first.click()
    expect(page.locator("#agent-rows tr[data-state=running]")) \
        .to_have_count(1)
    shots.append(screenshot(page, "agents.png", tmp_path))
    for path in shots:  # real PNG images of a laptop screen or more
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
        width = int.from_bytes(data[16:20], "big")
        assert width >= VIEWPORT["width"], (path, width)
    for job in (busy, waiting, held):
        admin.cancel(job["id"])


def test_disable_and_enable_an_agent(page, ui_farm):
    (agent,) = ui_farm.agents()
    log_in(page, ADMIN, "/agents/")
    mark_page(page)
    row = page.locator(f"#agent-{agent['id']}")
    expect(row).not_to_have_attribute("data-state", "disabled")
    row.get_by_role("button", name="Disable").click()
    expect(row).to_have_attribute("data-state", "disabled")
    expect(row).to_contain_text("disabled")
    assert ui_farm.agents()[0]["state"] == "disabled"
    # The agent keeps syncing; it stays disabled.
    page.wait_for_timeout(1500)
    expect(row).to_have_attribute("data-state", "disabled")

    row.get_by_role("button", name="Enable").click()
    expect(row).to_have_attribute("data-state", re.compile("online|running"))
    assert ui_farm.agents()[0]["state"] in ("online", "running")
    assert_not_reloaded(page)


def test_an_artist_sees_no_admin_buttons(page, ui_farm):
    log_in(page, ARTIST, "/agents/")
    expect(page.locator("#agent-rows tr[data-state]")).to_have_count(1)
    expect(page.get_by_role("button", name="Disable")).to_have_count(0)

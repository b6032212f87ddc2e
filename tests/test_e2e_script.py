"""
The README's first command, ``./scripts/farm``, starts a working farm.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from farmlib import free_port, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def test_farm_script_runs_a_job_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = dict(os.environ, PYFARM_PORT=str(port),
               PYFARM_FARM_DIR=str(tmp_path / "farm"),
               PYFARM_SYNC_INTERVAL="0.5", PYFARM_SCHEDULER_INTERVAL="0.2",
               PYFARM_CONFIG="", XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("PYFARM_DATABASE_URL", None)
    output = tmp_path / "farm.out"
    with open(output, "wb") as out:
        script = subprocess.Popen(
            [str(ROOT / "scripts" / "farm")], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = wait_until(
            lambda: "Press Ctrl-C" in output.read_text() and
            output.read_text(), 120, message="the farm to start")
        token = (tmp_path / "farm" / "admin-token").read_text().strip()
        assert token in text
        # The web UI takes the admin password the script printed.
        password = re.search(r"user admin, password (\S+);", text).group(1)
        assert password == (tmp_path / "farm" / "admin-password") \
            .read_text().strip()
        browser = requests.Session()
        login = browser.get(f"http://127.0.0.1:{port}/login", timeout=5)
        csrf = re.search(r'name="csrf-token" content="([^"]+)"',
                         login.text).group(1)
        home = browser.post(
            f"http://127.0.0.1:{port}/login", timeout=5,
            data={"name": "admin", "password": password, "csrf_token": csrf})
        assert home.status_code == 200 and home.url.endswith("/")
        assert "Log out" in home.text
        # Run the example curl command the script printed.
        curl = re.search(r"(curl -s -X POST .*?\}\}')", text, re.S).group(1)
        answer = subprocess.run(["bash", "-c", curl], capture_output=True,
                                text=True, timeout=30, check=True)
        job = requests.get(  # the job the printed command submitted
            f"http://127.0.0.1:{port}/api/v1/jobs/",
            headers={"Authorization": f"Bearer {token}"}, timeout=5,
        ).json()["jobs"][0]
        assert str(job["id"]) in answer.stdout
        job_id = job["id"]

        def get(path):
            return requests.get(
                f"http://127.0.0.1:{port}/api/v1/{path}",
                headers={"Authorization": f"Bearer {token}"}, timeout=5).json()

        def report():  # what a failure message needs to be understood
            tasks = get(f"jobs/{job_id}/tasks/")
            return (f"tasks: {tasks}\n"
                    f"agents: {get('agents/')}\n"
                    f"farm output:\n{output.read_text()}")

        def done():
            state = get(f"jobs/{job_id}")["state"]
            assert state != "failed", report()
            return state == "done"

        try:
            wait_until(done, 90, interval=0.3, message="the example job")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{report()}") from None
    finally:
        os.killpg(script.pid, signal.SIGINT)
        try:
            script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
            sys.stderr.write(output.read_text())
            raise
    # Ctrl-C stopped every process of the farm.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/api/v1/", timeout=2)

"""
Benchmark: the web UI's pages and the jobs API on a farm with a history.

Builds an SQLite database at the newest schema holding 10,000 jobs of 100
frames each (1,000,000 tasks, most done, some running, queued, paused or
failed; several users, queues and tags) with bulk inserts, and keeps it
in the temporary folder under a key made of the schema's migrations and
this builder, so that the next run starts at once (``--rebuild`` builds it
again). Each run works on a copy of it: starts a real master
(``pyfarm-master serve``, gunicorn), logs in to the web UI as an admin,
makes an API token, then times every page after a warm-up and prints the
machine, the median of the runs in milliseconds and PASS or FAIL against
the target (500 ms).

    .venv/bin/python bench/ui_pages.py [--runs 5] [--rebuild]
                                       [--jobs 10000] [--frames 100]
                                       [--profile]

``--profile`` also loads every page once inside this process and lists
its slowest SQL statements. The exit status is 1 when a page misses the
target.
"""

import argparse
import hashlib
import json
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402
from benchlib import machine  # noqa: E402
from farmlib import Farm, wait_until  # noqa: E402

#: Bump when the generated data changes, so cached databases are rebuilt.
BUILDER_VERSION = 1
#: The page time every page must stay under.
TARGET_MS = 500
#: Statements taking at least this long (s) are listed by ``--profile``.
SLOW_STATEMENT = 0.0005
#: The admin who logs in; the password exists only in the benchmark's
#: throw-away database.
LOGIN = ("wrangler", "bench-password")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
QUEUES = (("lighting", 20), ("fx", 10), ("comp", 30), ("anim", 0),
          ("sim", 5), ("lookdev", 15))
TAGS = ("gpu", "bigmem", "hero", "preview", "final", "denoise")
#: The title searched for: one shot, in about 1 % of the jobs.
SEARCH = "sh0420"
#: How many of the newest jobs are still being worked on.
OPEN_JOBS = 400
FRAME_START = 1001
EPOCH = datetime(2026, 9, 1, 8, 0)
AGENTS = 200
TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


def stamp(moment):
    """Format a naive UTC datetime the way SQLAlchemy stores it."""
    return moment.strftime(TIMESTAMP)


# -- building the database ---------------------------------------------------

def cache_key(jobs, frames):
    """Return a key naming the schema, the builder and the size."""
    digest = hashlib.sha256()
    versions = ROOT / "pyfarm-master" / "pyfarm" / "master" / "migrations"
    for path in sorted(versions.rglob("*.py")):
        digest.update(path.relative_to(versions).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(f"{BUILDER_VERSION}:{jobs}:{frames}".encode())
    return digest.hexdigest()[:16]


def job_state(age, rng):
    """Return the state of the job ``age`` jobs older than the newest:
    old jobs have ended, most of the newest are still open."""
    if age >= OPEN_JOBS:
        return "failed" if rng.random() < 0.04 else "done"
    roll = rng.random()
    if roll < 0.40:
        return "running"
    if roll < 0.75:
        return "queued"
    if roll < 0.85:
        return "paused"
    if roll < 0.90:
        return "failed"
    return "done"


def build_database(path, jobs, frames, seed=20261125):
    """Create the database at ``path`` (at the newest schema) and fill it.

    Returns ``{"jobs": n, "tasks": n, "attempts": n, "seconds": s}``.
    """
    from pyfarm.master.auth import hash_password
    from pyfarm.master.schema import upgrade

    started = time.perf_counter()
    upgrade(f"sqlite:///{path}")
    rng = random.Random(seed)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
        "PRAGMA cache_size = -400000; PRAGMA foreign_keys = OFF;"
        "BEGIN;")
    execute = connection.execute
    many = connection.executemany
    created = stamp(EPOCH - timedelta(days=90))

    # People, queues, tags, agents.
    many("INSERT INTO users (name, role, email, password_hash, active, "
         "created_at) VALUES (?, ?, ?, ?, 1, ?)",
         [(LOGIN[0], "admin", None, hash_password(LOGIN[1]), created)]
         + [(name, "user", f"{name}@studio.example", None, created)
            for name in USERS])
    user_ids = [row[0] for row in execute(
        "SELECT id FROM users WHERE role = 'user' ORDER BY id")]
    many("INSERT INTO jobqueues (name, priority, weight, created_at) "
         "VALUES (?, ?, 1, ?)",
         [(name, priority, created) for name, priority in QUEUES])
    queues = list(execute("SELECT id, name FROM jobqueues ORDER BY id"))
    many("INSERT INTO tags (name) VALUES (?)", [(tag,) for tag in TAGS])
    tag_ids = [row[0] for row in execute("SELECT id FROM tags ORDER BY id")]
    jobtype_id = execute(
        "SELECT id FROM jobtypes WHERE name = 'command'").fetchone()[0]
    agent_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4))
                 for _ in range(AGENTS)]
    agent_rows = []
    for index, agent_id in enumerate(agent_ids):
        state = ("offline" if index % 25 == 24 else
                 "disabled" if index % 40 == 39 else "running")
        agent_rows.append((
            agent_id, f"render-{index + 1:03d}", "linux", "Debian 12",
            32, 128000, 64000, json.dumps([]),
            json.dumps([{"path": "/", "size": 500 * 2**30,
                         "free": 200 * 2**30}]),
            "1.0", f"10.0.{index // 200}.{index % 200 + 10}", state,
            created, stamp(EPOCH + timedelta(days=85))))
    many("INSERT INTO agents (id, hostname, os, os_version, cpus, ram, "
         "free_ram, gpus, disks, version, remote_addr, state, "
         "registered_at, last_heard_at) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", agent_rows)
    busy_agents = [row[0] for row in agent_rows if row[11] == "running"]

    job_rows, job_tag_rows, task_rows, attempt_rows = [], [], [], []
    task_id = attempt_id = 0
    spacing = timedelta(days=85) / jobs
    for number in range(1, jobs + 1):
        state = job_state(jobs - number, rng)
        queue_id, department = rng.choice(queues)
        if rng.random() < 0.1:
            queue_id = None
        sequence, shot = rng.randint(1, 40), rng.randrange(10, 1000, 10)
        title = (f"sq{sequence:03d}_sh{shot:04d} {department} "
                 f"v{rng.randint(1, 30):03d}")
        submitted = EPOCH + spacing * number
        batch = 5 if number % 7 == 0 else 1
        if state == "done":
            done, running, failed = frames, 0, 0
        elif state == "failed":
            failed = rng.randint(1, min(5, frames))
            done, running = frames - failed, 0
        elif state == "running":
            # Bounded by the frames, for the tiny farms of the smoke test.
            done = rng.randint(0, max(0, frames - 10))
            running = min(rng.randint(1, 6), frames - done)
            failed = 1 if (rng.random() < 0.2
                           and done + running < frames) else 0
        elif state == "paused":
            done, running, failed = rng.randint(0, frames - 1), 0, 0
        else:
            done = running = failed = 0
        frame_seconds = rng.randint(20, 600)
        finished_job = None
        started_job = submitted + timedelta(seconds=30) \
            if state != "queued" else None
        for index in range(frames):
            task_id += 1
            frame = FRAME_START + index
            assignment = str(uuid.UUID(int=task_id))
            begin = submitted + timedelta(
                seconds=30 + frame_seconds * (index // 20))
            end = begin + timedelta(seconds=frame_seconds)
            if index < done:
                agent = rng.choice(agent_ids)
                task_rows.append((
                    task_id, number, frame, "done", agent, assignment, 1,
                    0, 1.0, None, stamp(submitted), stamp(end),
                    stamp(begin), stamp(begin), stamp(end)))
                attempt_id += 1
                attempt_rows.append((
                    attempt_id, task_id, 1, agent, assignment, "done", None,
                    stamp(begin), stamp(begin), stamp(end)))
                finished_job = max(finished_job or end, end)
            elif index < done + failed:
                agent = rng.choice(agent_ids)
                error = "exit status 3"
                task_rows.append((
                    task_id, number, frame, "failed", agent, assignment, 4,
                    4, 0.0, error, stamp(submitted), stamp(end),
                    stamp(begin), stamp(begin), stamp(end)))
                for attempt in range(1, 5):
                    attempt_id += 1
                    attempt_rows.append((
                        attempt_id, task_id, attempt, rng.choice(agent_ids),
                        assignment, "failed", error, stamp(begin),
                        stamp(begin), stamp(end)))
                finished_job = max(finished_job or end, end)
            elif index < done + failed + running:
                agent = rng.choice(busy_agents)
                task_rows.append((
                    task_id, number, frame, "running", agent, assignment,
                    1, 0, round(rng.random(), 2), None, stamp(submitted),
                    stamp(begin), stamp(begin), stamp(begin), None))
                attempt_id += 1
                attempt_rows.append((
                    attempt_id, task_id, 1, agent, assignment, "running",
                    None, stamp(begin), stamp(begin), None))
            else:
                task_rows.append((
                    task_id, number, frame, "queued", None, None, 0, 0,
                    0.0, None, stamp(submitted), stamp(submitted), None,
                    None, None))
        ended = state in ("done", "failed")
        job_rows.append((
            number, title, jobtype_id, state, FRAME_START,
            FRAME_START + frames - 1, batch, rng.choice((0, 0, 0, 10, 50)),
            json.dumps({"argv": [
                "blender", "-b",
                f"/projects/sq{sequence:03d}/sh{shot:04d}/{department}.blend",
                "-o", "/renders/####", "-s", "{start}", "-e", "{end}",
                "-a"]}),
            queue_id, rng.choice(user_ids), stamp(submitted),
            stamp(finished_job or submitted),
            stamp(started_job) if started_job else None,
            stamp(finished_job) if ended and finished_job else None))
        for tag_id in rng.sample(tag_ids, rng.randint(0, 2)):
            job_tag_rows.append((number, tag_id))
        if len(task_rows) >= 200_000:
            _flush(connection, job_rows, job_tag_rows, task_rows,
                   attempt_rows)
    _flush(connection, job_rows, job_tag_rows, task_rows, attempt_rows)
    execute("COMMIT")
    connection.executescript("PRAGMA journal_mode = DELETE;")
    connection.close()
    return {"jobs": jobs, "tasks": task_id, "attempts": attempt_id,
            "seconds": round(time.perf_counter() - started, 1)}


def _flush(connection, job_rows, job_tag_rows, task_rows, attempt_rows):
    """Insert the rows gathered so far and empty the lists."""
    connection.executemany(
        "INSERT INTO jobs (id, title, jobtype_id, jobtype_version, state, "
        'start, "end", "by", batch, priority, weight, requeue, cpus, ram, '
        "data, environ, notes, jobqueue_id, user_id, created_at, "
        "updated_at, started_at, finished_at) VALUES "
        "(?, ?, ?, 1, ?, ?, ?, 1, ?, ?, 1, 3, 1, 0, ?, '{}', '', ?, ?, ?, "
        "?, ?, ?)", job_rows)
    connection.executemany(
        "INSERT INTO job_tags (job_id, tag_id) VALUES (?, ?)", job_tag_rows)
    connection.executemany(
        "INSERT INTO tasks (id, job_id, frame, state, agent_id, "
        "assignment_id, attempt, failures, progress, last_error, "
        "created_at, updated_at, assigned_at, started_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", task_rows)
    connection.executemany(
        "INSERT INTO task_attempts (id, task_id, attempt, agent_id, "
        "assignment_id, state, error, assigned_at, started_at, "
        "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", attempt_rows)
    for rows in (job_rows, job_tag_rows, task_rows, attempt_rows):
        rows.clear()


def cached_database(jobs, frames, rebuild, cache_dir):
    """Return the path of the cached database, building it if needed."""
    folder = Path(cache_dir) / cache_key(jobs, frames)
    path = folder / "pyfarm.sqlite"
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if path.exists():
        print(f"database: {path} (cached; --rebuild builds it again)",
              flush=True)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "building.sqlite"
    partial.unlink(missing_ok=True)
    print(f"building {jobs} jobs of {frames} frames in {partial}...",
          flush=True)
    built = build_database(partial, jobs, frames)
    partial.rename(path)
    print(f"built {built['jobs']} jobs, {built['tasks']} tasks and "
          f"{built['attempts']} attempts in {built['seconds']} s",
          flush=True)
    return path


# -- what is measured ---------------------------------------------------------

def sample_ids(path):
    """Return ids of jobs worth opening: the newest running and failed."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {state: connection.execute(
            "SELECT max(id) FROM jobs WHERE state = ?", (state,)
        ).fetchone()[0] for state in ("running", "failed")}
    finally:
        connection.close()


def pages(ids, jobs):
    """Return ``(name, path, htmx, api, expected)`` of every timed request;
    ``expected`` is text the answer must hold (a job's row, the grid).

    The API lists 100 jobs a page and the jobs page 50: the middle page
    shows the same jobs in both.
    """
    api_page, ui_page = max(1, jobs // 200), max(1, jobs // 100)
    api = [("first page", ""), (f"page {api_page}", f"?page={api_page}"),
           ("state=failed", "?state=failed"),
           (f"title search {SEARCH!r}", f"?title={SEARCH}")]
    ui = [("first page", ""), (f"page {ui_page}", f"?page={ui_page}"),
          ("state=failed", "?state=failed"),
          (f"title search {SEARCH!r}", f"?title={SEARCH}"),
          ("sorted by title", "?sort=title")]
    measured = [(f"API jobs, {name}", f"/api/v1/jobs/{query}", False, True,
                 '"title":') for name, query in api]
    measured += [(f"jobs page, {name}", f"/{query}", False, False,
                  '<tr id="job-') for name, query in ui]
    measured += [(f"jobs rows (htmx), {name}", f"/{query}", True, False,
                  '<tr id="job-') for name, query in ui]
    for state in ("running", "failed"):
        if ids[state] is not None:
            measured.append((f"job detail, {state} job {ids[state]}",
                             f"/jobs/{ids[state]}", False, False,
                             'id="frame-grid"'))
    if ids["running"] is not None:
        measured.append(("job detail, live part (htmx)",
                         f"/jobs/{ids['running']}", True, False,
                         'id="job-tasks"'))
    measured.append(("header overview (htmx)", "/ui/overview", True, False,
                     "online"))
    return measured


CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


def log_in(base, name, password):
    """Return a ``requests.Session`` logged in to the web UI."""
    browser = requests.Session()
    form = browser.get(base + "/login", timeout=30)
    form.raise_for_status()
    token = CSRF.search(form.text).group(1)
    answer = browser.post(base + "/login", timeout=30, data={
        "name": name, "password": password, "csrf_token": token,
        "next": ""}, allow_redirects=False)
    if answer.status_code != 302 or "/login" in answer.headers.get(
            "Location", "/login"):
        raise SystemExit(f"logging in as {name!r} failed: HTTP "
                         f"{answer.status_code}")
    return browser


def time_request(browser, url, htmx, token):
    """Fetch ``url`` once; return ``(milliseconds, response)``."""
    headers = {}
    if htmx:
        headers["HX-Request"] = "true"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    response = browser.get(url, headers=headers, timeout=120,
                           allow_redirects=False)
    _ = response.content
    return (time.perf_counter() - started) * 1000, response


def measure(base, browser, api, token, measured, runs):
    """Time every request ``runs`` times after a warm-up."""
    results = []
    for name, path, htmx, is_api, expected in measured:
        session = api if is_api else browser
        key = token if is_api else None
        _, response = time_request(session, base + path, htmx, key)
        if response.status_code != 200 or expected not in response.text:
            results.append({"page": name, "path": path, "htmx": htmx,
                            "status": response.status_code, "runs": [],
                            "median_ms": None, "bytes": 0,
                            "pass": False})
            print(f"  {name}: {path} answered {response.status_code} "
                  f"without {expected!r}", flush=True)
            continue
        times = [time_request(session, base + path, htmx, key)[0]
                 for _ in range(runs)]
        median = statistics.median(times)
        results.append({
            "page": name, "path": path, "htmx": htmx, "status": 200,
            "runs": [round(t, 1) for t in times],
            "median_ms": round(median, 1), "bytes": len(response.content),
            "pass": median <= TARGET_MS})
    return results


def serve_copy(database, root, workers):
    """Copy ``database`` into ``root`` and serve it; return the farm."""
    copy = Path(root) / "pyfarm.sqlite"
    shutil.copyfile(database, copy)
    farm = Farm(root, f"sqlite:///{copy}")
    farm.env["PYFARM_LOGLEVEL"] = "warning"
    farm.token = farm.run("pyfarm-master", "tokens", "create",
                          LOGIN[0]).strip()
    farm.spawn("master", "pyfarm-master", "serve", "--host", "127.0.0.1",
               "--port", str(farm.port), "--workers", str(workers))
    wait_until(farm._answers, 60, message=f"the master at {farm.url}")
    return farm


# -- profiling ---------------------------------------------------------------

def profile(database, measured, root):
    """Load each page once in this process; print its slowest SQL."""
    import sqlalchemy as sa

    from pyfarm.master.app import create_app
    from pyfarm.master.db import db

    copy = Path(root) / "profile.sqlite"
    shutil.copyfile(database, copy)
    app = create_app({"database_url": f"sqlite:///{copy}",
                      "data_dir": str(Path(root) / "profile")})
    app.config["WTF_CSRF_ENABLED"] = False
    statements = []

    def before(conn, cursor, statement, parameters, context, many):
        conn.info["pyfarm.started"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, many):
        seconds = time.perf_counter() - conn.info.pop("pyfarm.started")
        statements.append((seconds, statement, parameters))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    client = app.test_client()
    client.post("/login", data={"name": LOGIN[0], "password": LOGIN[1]})
    with app.app_context():
        from pyfarm.master.db import utcnow
        from pyfarm.master.services.users import create_token, get_user
        token = create_token(db.session, get_user(db.session, LOGIN[0]),
                             utcnow(), name="profile")
        db.session.commit()
    print("\nprofile: the slowest statements of each page (one load, in "
          "this process)")
    for name, path, htmx, is_api, _ in measured:
        headers = {"HX-Request": "true"} if htmx else {}
        if is_api:
            headers["Authorization"] = f"Bearer {token}"
        client.get(path, headers=headers)  # warm the page cache
        statements.clear()
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        total = (time.perf_counter() - started) * 1000
        sql = sum(seconds for seconds, _, _ in statements) * 1000
        print(f"\n{name} ({path}): {response.status_code}, {total:.0f} ms, "
              f"{len(statements)} statements, {sql:.0f} ms in SQL")
        slowest = [item for item in sorted(statements,
                                           key=lambda item: -item[0])[:3]
                   if item[0] >= SLOW_STATEMENT]
        for seconds, statement, parameters in slowest:
            text = " ".join(statement.split())
            print(f"  {seconds * 1000:7.1f} ms  {text[:300]}"
                  f"{' ...' if len(text) > 300 else ''}")
            print(f"             parameters {repr(parameters)[:100]}")
        if not slowest:
            print(f"  no statement took {SLOW_STATEMENT * 1000:.1f} ms")


# -- output ----------------------------------------------------------------

def report(results, described, runs):
    """Print the table of medians and the verdict."""
    print(f"\nmachine: {described['cores']} cores, {described['cpu']}, "
          f"{described['ram_gb']} GB RAM, Python {described['python']}, "
          f"SQLite {described['sqlite']}, SQLAlchemy "
          f"{described['sqlalchemy']}")
    print(f"median of {runs} runs after a warm-up; target "
          f"{TARGET_MS} ms\n")
    width = max(len(item["page"]) for item in results)
    for item in results:
        if item["median_ms"] is None:
            figure, verdict = f"HTTP {item['status']:>6}", "FAIL"
        else:
            figure = f"{item['median_ms']:8.1f} ms"
            verdict = "PASS" if item["pass"] else "FAIL"
        print(f"  {item['page']:<{width}}  {figure}  {verdict}")


def main(argv=None):
    """Run the benchmark; return 0 when every page meets the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=100,
                        help="frames (tasks) per job")
    parser.add_argument("--runs", type=int, default=5,
                        help="timed runs of each page (at least 3)")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers of the master")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the database again")
    parser.add_argument("--cache-dir", default=str(
        Path(tempfile.gettempdir()) / "pyfarm-bench-ui"),
        help="where the built database is kept")
    parser.add_argument("--profile", action="store_true",
                        help="list the slowest SQL statements of each page")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3")
    if args.jobs < 1 or args.frames < 1:
        parser.error("--jobs and --frames must be at least 1")

    database = cached_database(args.jobs, args.frames, args.rebuild,
                               args.cache_dir)
    ids = sample_ids(database)
    measured = pages(ids, args.jobs)
    with tempfile.TemporaryDirectory(prefix="pyfarm-bench-ui-") as root:
        started = time.perf_counter()
        farm = serve_copy(database, root, args.workers)
        print(f"master up on a copy in {time.perf_counter() - started:.1f}"
              f" s", flush=True)
        try:
            with log_in(farm.url, *LOGIN) as browser, \
                    requests.Session() as api:
                results = measure(farm.url, browser, api, farm.token,
                                  measured, args.runs)
        except BaseException:
            farm.dump_logs()
            raise
        finally:
            farm.stop()
        described = machine()
        report(results, described, args.runs)
        if args.profile:
            profile(database, measured, root)
    print(json.dumps({
        "benchmark": "ui_pages",
        "jobs": args.jobs, "frames_per_job": args.frames,
        "tasks": args.jobs * args.frames, "runs": args.runs,
        "workers": args.workers, "target_ms": TARGET_MS,
        "pages": results, "machine": described}, indent=2))
    return 0 if all(item["pass"] for item in results) else 1


if __name__ == "__main__":
    sys.exit(main())

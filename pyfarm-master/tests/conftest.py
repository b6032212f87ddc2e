"""
Fixtures for the master's tests.

``app`` runs each test against SQLite and against PostgreSQL
(127.0.0.1:5432, user ``postgres``; override with
``PYFARM_TEST_POSTGRES_URL``). The PostgreSQL database is created for the
test session, upgraded with Alembic and dropped at the end; tables are
emptied after each test. Use ``--backend sqlite`` to run only one.
"""

import os
import re
import shutil
import uuid

import pytest
import sqlalchemy as sa

from pyfarm.core.enums import Role
from pyfarm.master.app import create_app
from pyfarm.master.auth import hash_password, hash_token, new_token
from pyfarm.master.db import db, utcnow
from pyfarm.master.models import ApiToken, User
from pyfarm.master.schema import upgrade

POSTGRES_SERVER = os.environ.get(
    "PYFARM_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser):
    parser.addoption(
        "--backend", action="append", choices=BACKENDS,
        help="database backend(s) for the master's tests (default: both)")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend") or list(BACKENDS)
        metafunc.parametrize("backend", chosen, scope="session")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """An SQLite file at the head revision, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "pyfarm.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


def postgres_reachable():
    """Return None when the server answers, else why it does not."""
    engine = sa.create_engine(POSTGRES_SERVER, poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            return None
    except sa.exc.OperationalError as error:
        return str(error).splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database at the head revision for this test session."""
    problem = postgres_reachable()
    if problem:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER}: {problem}")
    name = f"pyfarm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(POSTGRES_SERVER).set(database=name)
    url = url.render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def empty_postgres(url):
    """Delete every row except the seeded job types."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        tables = [t.name for t in db.metadata.sorted_tables
                  if t.name != "jobtypes"]
        connection.exec_driver_sql(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
            + " RESTART IDENTITY CASCADE")
        connection.exec_driver_sql(
            "DELETE FROM jobtypes WHERE name <> 'command'")
    engine.dispose()


@pytest.fixture
def database_url(backend, tmp_path, request):
    """A database at the head revision, empty but for seeded rows."""
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "pyfarm.sqlite"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        empty_postgres(url)


@pytest.fixture
def app(database_url, tmp_path):
    """The master application on a fresh database."""
    app = create_app({"database_url": database_url,
                      "data_dir": str(tmp_path / "data")})
    app.config["TESTING"] = True
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture
def session(app):
    """The database session of the app context."""
    return db.session


@pytest.fixture
def make_user(app):
    """Create a user with a token: ``make_user("alice", "user")``.

    Returns ``(user, token)``; the token goes in ``Authorization``.
    """
    def make(name, role=Role.USER, password=None):
        user = User(name=name, role=Role(role),
                    password_hash=hash_password(password) if password
                    else None)
        token = new_token()
        user.tokens.append(ApiToken(name="test", token_hash=hash_token(token),
                                    created_at=utcnow()))
        db.session.add(user)
        db.session.commit()
        return user, token
    return make


class Api:
    """A test client that sends JSON with a bearer token."""

    def __init__(self, client, token=None):
        self.client = client
        self.token = token

    def as_(self, token):
        """Return a copy sending ``token``."""
        return Api(self.client, token)

    def _headers(self, token):
        token = self.token if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method, path, json=None, token=None, **kwargs):
        """Send one request; return the response."""
        return self.client.open(path, method=method, json=json,
                                headers=self._headers(token), **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path, json=None, **kwargs):
        return self.request("PATCH", path, json=json, **kwargs)

    def put(self, path, json=None, **kwargs):
        return self.request("PUT", path, json=json, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def admin(client, make_user):
    """An :class:`Api` client with an admin's token."""
    return Api(client, make_user("admin", Role.ADMIN)[1])


@pytest.fixture
def alice(client, make_user):
    """An :class:`Api` client for the user ``alice``."""
    return Api(client, make_user("alice", Role.USER)[1])


@pytest.fixture
def bob(client, make_user):
    """An :class:`Api` client for the user ``bob``."""
    return Api(client, make_user("bob", Role.USER)[1])


@pytest.fixture
def agent_api(client, make_user):
    """An :class:`Api` client with an agent-role token."""
    return Api(client, make_user("agents", Role.AGENT)[1])


class Ui:
    """A logged-in browser for the web UI's tests (Flask test client).

    Sends the CSRF token of its session with every POST, as the pages do,
    unless ``csrf=False``; ``htmx=True`` sends the headers htmx sends.
    """

    def __init__(self, app, name=None, password=None):
        self.client = app.test_client()
        self.token = None
        if name is not None:
            answer = self.login(name, password)
            assert answer.status_code == 302, answer.get_data(as_text=True)

    def csrf_token(self):
        """Return the CSRF token of this session (read from a page)."""
        if self.token is None:
            page = self.client.get(
                "/login", follow_redirects=True).get_data(as_text=True)
            match = re.search(r'name="csrf-token" content="([^"]+)"', page)
            self.token = match.group(1)
        return self.token

    def login(self, name, password):
        self.token = None
        return self.post("/login", {"name": name, "password": password})

    def get(self, path, htmx=False, **kwargs):
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path, data=None, csrf=True, htmx=False, **kwargs):
        data = dict(data or {})
        headers = {}
        if htmx:
            headers["HX-Request"] = "true"
            if csrf:
                headers["X-CSRFToken"] = self.csrf_token()
        elif csrf:
            data.setdefault("csrf_token", self.csrf_token())
        return self.client.post(path, data=data, headers=headers, **kwargs)


#: The password of the UI fixtures' users.
PASSWORD = "correct horse battery"


@pytest.fixture
def new_ui(app):
    """``new_ui()``: a :class:`Ui` nobody logged in to yet (the test
    modules cannot import this conftest, which pytest loads by path)."""
    return lambda: Ui(app)


@pytest.fixture
def ui_password():
    """The password of the users :func:`ui_user` makes."""
    return PASSWORD


@pytest.fixture
def ui_user(app, make_user):
    """``ui_user("alice", "user")``: make a user with a password and return
    ``(Ui logged in as them, user, API token)``."""
    def make(name, role=Role.USER):
        user, token = make_user(name, role, password=PASSWORD)
        return Ui(app, name, PASSWORD), user, token
    return make


@pytest.fixture
def ui_admin(ui_user):
    """A :class:`Ui` logged in as the admin ``root``."""
    return ui_user("root", Role.ADMIN)[0]


@pytest.fixture
def ui_alice(ui_user):
    """A :class:`Ui` logged in as the user ``alice``."""
    return ui_user("alice")[0]

"""
The ``pyfarm-master`` command.

::

    pyfarm-master serve [--host H] [--port P] [--workers N]
    pyfarm-master scheduler [--once]
    pyfarm-master db upgrade | db check
    pyfarm-master users create NAME [--role ROLE] [--password P]
    pyfarm-master users list
    pyfarm-master users password NAME   (reads it from stdin or asks)
    pyfarm-master tokens create NAME [--label LABEL]

Settings come from the config files and ``PYFARM_*`` variables (see
:mod:`pyfarm.master.settings`).
"""

import argparse
import contextlib
import sys

from pyfarm.core.config import ConfigError
from pyfarm.core.logger import getLogger
from pyfarm.master.errors import MasterError

logger = getLogger("master.cli")


def build_parser():
    """Return the argument parser of ``pyfarm-master``."""
    parser = argparse.ArgumentParser(
        prog="pyfarm-master", description="PyFarm's master.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API and web UI")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--workers", type=int, default=2,
                       help="gunicorn worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=4,
                       help="threads per worker (default 4)")
    serve.set_defaults(handler=cmd_serve)

    scheduler = commands.add_parser("scheduler",
                                    help="run the scheduler loop")
    scheduler.add_argument("--once", action="store_true",
                           help="run one pass and exit")
    scheduler.set_defaults(handler=cmd_scheduler)

    database = commands.add_parser("db", help="manage the database schema")
    db_commands = database.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="upgrade to the newest schema") \
        .set_defaults(handler=cmd_db_upgrade)
    db_commands.add_parser("check", help="exit 1 unless at the newest") \
        .set_defaults(handler=cmd_db_check)

    users = commands.add_parser("users", help="manage users")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    create = user_commands.add_parser("create", help="create a user")
    create.add_argument("name")
    create.add_argument("--role", default="user",
                        choices=["admin", "user", "agent"])
    create.add_argument("--password")
    create.add_argument("--email")
    create.set_defaults(handler=cmd_users_create)
    user_commands.add_parser("list", help="list users") \
        .set_defaults(handler=cmd_users_list)
    password = user_commands.add_parser(
        "password", help="set a user's web UI password (read from stdin, "
                         "or asked for on a terminal)")
    password.add_argument("name")
    password.set_defaults(handler=cmd_users_password)

    tokens = commands.add_parser("tokens", help="manage API tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command",
                                           required=True)
    token = token_commands.add_parser(
        "create", help="print a new token for a user")
    token.add_argument("name", help="the user's name")
    token.add_argument("--label", default="", help="what the token is for")
    token.set_defaults(handler=cmd_tokens_create)
    return parser


@contextlib.contextmanager
def app_context(check_schema=True):
    """Run the block in an app context; close the database afterwards."""
    from pyfarm.master.app import create_app
    from pyfarm.master.db import db

    overrides = None if check_schema else {"check_schema": False}
    with create_app(overrides).app_context():
        try:
            yield
        finally:
            db.session.remove()
            db.engine.dispose()


def cmd_serve(args):
    """Serve the app with gunicorn (or Werkzeug where it is missing)."""
    from pyfarm.master.serve import serve

    serve(args.host, args.port, workers=args.workers, threads=args.threads)


def cmd_scheduler(args):
    """Run the scheduler loop in this process."""
    from pyfarm.master.app import create_app
    from pyfarm.master.scheduler.loop import run

    run(create_app(), once=args.once)


def cmd_db_upgrade(args):
    """Upgrade the database to the head revision."""
    from pyfarm.master.schema import upgrade
    from pyfarm.master.settings import load_settings

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print("database is at the newest schema")


def cmd_db_check(args):
    """Exit 0 when the database is at the head revision."""
    with app_context():
        print("database is at the newest schema")


def cmd_users_create(args):
    """Create a user."""
    from pyfarm.master.db import db, utcnow
    from pyfarm.master.services.users import create_user

    with app_context():
        user = create_user(db.session, args.name, args.role, utcnow(),
                           password=args.password, email=args.email)
        db.session.commit()
        print(f"created {user.role} {user.name!r}")


def cmd_users_list(args):
    """List users."""
    from sqlalchemy import select

    from pyfarm.master.db import db
    from pyfarm.master.models import User

    with app_context():
        for user in db.session.execute(select(User).order_by(User.name)) \
                .scalars():
            state = "" if user.active else " (disabled)"
            print(f"{user.name}\t{user.role}{state}")


def read_password(stdin=None, ask=None):
    """Return a new password: asked twice on a terminal, else the first
    line of stdin."""
    import getpass

    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    ask = ask or getpass.getpass
    first = ask("New password: ")
    if first != ask("Again: "):
        raise PasswordMismatch("the two passwords differ; nothing changed")
    return first


class PasswordMismatch(MasterError):
    """The password typed twice differs."""


def cmd_users_password(args):
    """Set a user's password for the web UI."""
    from pyfarm.master.db import db
    from pyfarm.master.services.users import get_user, set_password

    with app_context():
        user = get_user(db.session, args.name)
        set_password(user, read_password())
        db.session.commit()
        print(f"password of {user.name!r} set")


def cmd_tokens_create(args):
    """Print a new token for a user."""
    from pyfarm.master.db import db, utcnow
    from pyfarm.master.services.users import create_token, get_user

    with app_context():
        user = get_user(db.session, args.name)
        token = create_token(db.session, user, utcnow(), name=args.label)
        db.session.commit()
        print(token)


def main(argv=None):
    """Run ``pyfarm-master``; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ConfigError, MasterError) as error:
        print(f"pyfarm-master: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

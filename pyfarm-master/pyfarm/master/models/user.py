"""Users, their roles and their API tokens (stored hashed)."""

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfarm.core.enums import Role
from pyfarm.master.db import db, utcnow


class User(UserMixin, db.Model):
    """A person or an agent account; ``role`` says what it may do.

    People log in to the web UI with a password (Flask-Login's
    :class:`~flask_login.UserMixin` makes a user a login).
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list["ApiToken"]] = relationship(
        back_populates="user", cascade="all, delete-orphan",
        passive_deletes=True)

    def __repr__(self):
        return f"<User {self.name!r} role={self.role}>"

    def get_id(self):
        """What a browser session stores: the id and a fragment of the
        password hash, so a new password ends the old sessions."""
        return f"{self.id}:{(self.password_hash or '')[-12:]}"


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 digest is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")

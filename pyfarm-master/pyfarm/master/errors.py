"""
Errors the master raises on purpose.

Every one derives from :class:`MasterError`. The API turns an
:class:`ApiError` into ``{"error": message}`` with its HTTP status; the
message says what to fix.
"""


class MasterError(Exception):
    """Base class of the master's own errors."""


class SchemaOutOfDate(MasterError):
    """The database is not at the head Alembic revision."""


class ApiError(MasterError):
    """An error with an HTTP status, reported to the client as JSON."""

    status = 400
    #: Extra HTTP headers of the answer.
    headers = {}

    def __init__(self, message, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_dict(self):
        """Return the JSON body for this error."""
        return {"error": self.message, **self.extra}


class BadRequest(ApiError):
    """The request is malformed or names a bad value (400)."""

    status = 400


class Unauthorized(ApiError):
    """No or an unknown token (401)."""

    status = 401


class Forbidden(ApiError):
    """The token's role may not do this (403)."""

    status = 403


class NotFound(ApiError):
    """The named object does not exist (404)."""

    status = 404


class Conflict(ApiError):
    """The request conflicts with the current state (409)."""

    status = 409


class Busy(ApiError):
    """The database aborted the request's transaction again and again
    (deadlock or lock timeout under load); the client should send the
    request again (503)."""

    status = 503
    headers = {"Retry-After": "1"}

    def __init__(self, message="the database was busy (deadlock or lock "
                               "timeout); send the request again",
                 **extra):
        super().__init__(message, **extra)

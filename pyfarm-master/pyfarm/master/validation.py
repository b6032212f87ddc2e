"""
Request bodies parsed with pydantic into clear 400 errors.

Models used here forbid unknown fields and do not coerce types, so
``"5"`` for a number is an error that names the field.
"""

from flask import request
from pydantic import BaseModel, ConfigDict, ValidationError

from pyfarm.master.errors import BadRequest


class Strict(BaseModel):
    """Base of request models: unknown fields and wrong types are 400."""

    model_config = ConfigDict(extra="forbid", strict=True)


def describe(error):
    """Turn one pydantic error into a sentence naming the field."""
    where = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    if error["type"] == "missing":
        return f"field {where!r} is required"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"field {where!r}: {message}"


def parse(model, payload):
    """Validate ``payload`` against ``model`` or raise :class:`BadRequest`."""
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        problems = [describe(item) for item in error.errors()]
        raise BadRequest("; ".join(problems), problems=problems) from None


def json_body():
    """Return the request's JSON object or raise :class:`BadRequest`."""
    if not request.is_json:
        raise BadRequest("send a JSON body with "
                         "'Content-Type: application/json'")
    payload = request.get_json(silent=True)
    if payload is None:
        raise BadRequest("the request body is not valid JSON")
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    return payload


def query_int(name, default, minimum=None, maximum=None):
    """Read an integer query argument or raise :class:`BadRequest`."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query argument {name!r} must be a whole number, "
                         f"got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise BadRequest(f"query argument {name!r} must be at least "
                         f"{minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"query argument {name!r} must be at most "
                         f"{maximum}, got {value}")
    return value

"""
Request bodies parsed with pydantic into clear 400 errors.

Models used here forbid unknown fields and do not coerce types, so
``"5"`` for a number is an error that names the field.
"""

import json
import math
from typing import Annotated

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pyfarm.master.errors import BadRequest

#: The largest value of an SQL INTEGER column (ids, counts, frames).
MAX_INT = 2**31 - 1

#: A whole number that fits an SQL INTEGER column.
Int32 = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]
#: A count or size that fits an SQL INTEGER column: 0 or more.
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
#: A whole number from 1 that fits an SQL INTEGER column.
Positive = Annotated[int, Field(ge=1, le=MAX_INT)]
#: A database id or an attempt number.
Id = Positive
#: How deeply a request body may nest lists and objects. Job data and job
#: type schemas need a few levels; validating thousands recurses too far.
MAX_DEPTH = 64


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


def json_body(allow_nul=False):
    """Return the request's JSON object or raise :class:`BadRequest`.

    Refused as well: ``NaN`` and infinite numbers (not JSON, and
    PostgreSQL's JSON columns reject them), nesting deeper than
    :data:`MAX_DEPTH`, text holding a lone surrogate (``"\\ud800"`` cannot
    be stored as UTF-8) and, unless ``allow_nul``, text holding NUL
    characters (PostgreSQL text columns, argv and environment variables
    cannot hold them).
    """
    if not request.is_json:
        raise BadRequest("send a JSON body with "
                         "'Content-Type: application/json'")
    try:
        payload = json.loads(request.get_data(), parse_constant=_no_constant,
                             parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; nesting
        # deeper than Python's recursion limit is a RecursionError.
        raise BadRequest(f"the request body is not valid JSON: "
                         f"{error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    problem = body_problem(payload, allow_nul)
    if problem is not None:
        raise BadRequest(problem)
    return payload


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    return value


def body_problem(payload, allow_nul=False):
    """Return what is wrong with the nesting or a string (keys too) of
    ``payload``, or None. Walks without recursion."""
    stack = [((), payload)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            return (f"field {_where(path[:1])!r} nests lists or objects "
                    f"deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key, allow_nul)
                if problem:
                    return f"key {_where(path + (key,))!r} {problem}"
                stack.append((path + (key,), item))
        elif isinstance(value, list):
            stack.extend((path + (index,), item)
                         for index, item in enumerate(value))
        elif isinstance(value, str):
            problem = _text_problem(value, allow_nul)
            if problem:
                return f"field {_where(path)!r} {problem}"
    return None


def _text_problem(text, allow_nul):
    if not allow_nul and "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ("is not valid Unicode: it holds a lone surrogate "
                "(\\ud800-\\udfff)")
    return None


def _where(path):
    return ".".join(str(part) for part in path) or "body"


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

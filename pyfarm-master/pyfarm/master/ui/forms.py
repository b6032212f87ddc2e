"""
The submit form as pure functions, without Flask or a database.

- :func:`schema_fields` turns a job type's ``parameters`` JSON Schema into
  descriptions of form fields (:class:`FormField`);
- :func:`blank_values` and :func:`job_values` fill a form (defaults, or a
  copy of an existing job), :func:`read_form` reads what a person typed;
  values stay text, so a form with a mistake comes back as it was typed;
- :func:`to_payload` converts the values into the body ``POST
  /api/v1/jobs/`` takes, with types converted, or says which fields could
  not be converted, in the API's words (``field 'start': ...``).

Validation proper is left to the API's code (``JobSpec`` and the job
type's schema): these functions only turn text into JSON types.
"""

import json
import math
import re
from dataclasses import dataclass, replace
from itertools import zip_longest
from typing import Any

# Kinds of form field.
TEXT = "text"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
CHOICE = "choice"
LINES = "lines"
MAPPING = "mapping"
JSON = "json"

#: Whole-number fields of a job, with the text a new form shows.
INTEGER_FIELDS = {
    "start": "1", "end": "", "by": "1", "batch": "1", "priority": "0",
    "weight": "1", "requeue": "3", "cpus": "1", "ram": "0",
    "minimum_agents": "", "maximum_agents": "", "jobtype_version": "1",
}
#: Text fields of a job, as typed.
TEXT_FIELDS = ("title", "jobqueue", "tags", "parents", "notified_users",
               "notes", "environ", "data_extra")
#: The columns of the requirement rows.
TAG_COLUMNS = ("tag", "mode")
SOFTWARE_COLUMNS = ("software", "min_version", "max_version")
#: ``mode`` of a tag requirement row that negates it.
MUST_NOT = "must-not"

#: What a conversion returns for a value to leave out of the body.
OMIT = object()

_WHOLE = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SEPARATORS = re.compile(r"[,\n]")
_IDS = re.compile(r"[,\s]+")
_FIELD = re.compile(r"^(?:unknown )?field '([^']+)'")


@dataclass(frozen=True)
class FormField:
    """One input of a job type's parameters (a property of ``data``).

    ``kind`` is one of :data:`TEXT`, :data:`INTEGER`, :data:`NUMBER`,
    :data:`BOOLEAN`, :data:`CHOICE`, :data:`LINES` (a list, one item a
    line), :data:`MAPPING` (``key=value`` lines) or :data:`JSON`.
    ``default`` is the form value a new form shows (text, or a bool for a
    checkbox); ``choices`` are ``(text, value)`` pairs; ``item_kind`` is
    the kind of a :data:`LINES` field's items.
    """

    name: str
    kind: str
    label: str
    description: str = ""
    required: bool = False
    default: Any = None
    minimum: Any = None
    maximum: Any = None
    choices: tuple = ()
    item_kind: str = TEXT

    @property
    def input_name(self):
        """The name of the form input."""
        return "data." + self.name

    @property
    def path(self):
        """Where the API's messages put this field: ``data.<name>``."""
        return "data." + self.name

    @property
    def step(self):
        """The ``step`` of a number input."""
        return "1" if self.kind == INTEGER else "any"

    @property
    def multiline(self):
        """Whether the field is a textarea."""
        return self.kind in (LINES, MAPPING, JSON)


# -- schema to fields ------------------------------------------------------


def schema_fields(schema):
    """Return the :class:`FormField` of each of ``schema``'s
    ``properties``, in their declared order.

    Never fails on a valid JSON Schema: what has no simple form (``oneOf``,
    nested objects, ``true``) becomes a JSON text field.
    """
    if not isinstance(schema, dict):
        return []
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    return [_field(name, _resolve(prop, schema), name in required)
            for name, prop in properties.items()]


def allows_other_data(schema):
    """Whether ``data`` may hold keys other than the declared properties
    (a JSON text field offers them)."""
    if not isinstance(schema, dict):
        return schema is not False
    return (schema.get("additionalProperties", True) is not False
            or bool(schema.get("patternProperties"))) \
        and schema.get("unevaluatedProperties", True) is not False


def _resolve(prop, root, depth=0):
    """Follow a local ``$ref`` (``#/$defs/name``) a few levels deep."""
    while isinstance(prop, dict) and isinstance(prop.get("$ref"), str) \
            and prop["$ref"].startswith("#") and depth < 8:
        target = root
        for part in prop["$ref"][1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return prop
            target = target[part]
        if not isinstance(target, dict):
            return prop
        merged = {**target, **{key: value for key, value in prop.items()
                               if key != "$ref"}}
        prop, depth = merged, depth + 1
    return prop


def _field(name, prop, required):
    if not isinstance(prop, dict):
        prop = {}
    kind, item_kind = _kind(prop)
    title = prop.get("title")
    label = title if isinstance(title, str) and title.strip() else name
    description = prop.get("description")
    description = description if isinstance(description, str) else ""
    choices = ()
    if kind == CHOICE:
        options = prop["enum"] if "enum" in prop else [prop["const"]]
        choices = tuple((_choice_text(value), value) for value in options)
    minimum, maximum = _limits(prop, kind)
    field = FormField(name=name, kind=kind, label=label,
                      description=description, required=required,
                      minimum=minimum, maximum=maximum, choices=choices,
                      item_kind=item_kind)
    if "default" in prop:
        default = value_text(field, prop["default"])
    else:
        default = False if kind == BOOLEAN else ""
    return replace(field, default=default)


def _types(prop):
    """Return the JSON types ``prop`` allows besides null, or None."""
    types = prop.get("type")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list):
        return None
    return [kind for kind in types if kind != "null"]


def _kind(prop):
    """Return ``(kind, item kind)`` of the field for ``prop``."""
    if isinstance(prop.get("enum"), list) and prop["enum"] or "const" in prop:
        return CHOICE, TEXT
    if any(key in prop for key in ("oneOf", "anyOf", "allOf", "not", "if")):
        return JSON, TEXT
    types = _types(prop)
    if not types or len(types) != 1:
        return JSON, TEXT
    simple = {"string": TEXT, "integer": INTEGER, "number": NUMBER,
              "boolean": BOOLEAN}
    if types[0] in simple:
        return simple[types[0]], TEXT
    if types[0] == "array":
        items = prop.get("items")
        item_types = _types(items) if isinstance(items, dict) else None
        if item_types and len(item_types) == 1 and item_types[0] in (
                "string", "integer", "number") and not any(
                key in items for key in ("oneOf", "anyOf", "allOf")):
            return LINES, simple[item_types[0]]
        return JSON, TEXT
    if types[0] == "object":
        values = prop.get("additionalProperties")
        if isinstance(values, dict) and _types(values) == ["string"] \
                and not prop.get("properties") \
                and not prop.get("patternProperties"):
            return MAPPING, TEXT
    return JSON, TEXT


def _number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _limits(prop, kind):
    """Return the ``min`` and ``max`` of a number input, or None."""
    if kind not in (INTEGER, NUMBER):
        return None, None
    low, high = prop.get("minimum"), prop.get("maximum")
    low = low if _number(low) else None
    high = high if _number(high) else None
    if kind == INTEGER:
        if low is None and _number(prop.get("exclusiveMinimum")):
            low = math.floor(prop["exclusiveMinimum"]) + 1
        if high is None and _number(prop.get("exclusiveMaximum")):
            high = math.ceil(prop["exclusiveMaximum"]) - 1
    return low, high


def _choice_text(value):
    return value if isinstance(value, str) else json.dumps(value)


# -- values to show --------------------------------------------------------


def value_text(field, value):
    """Return the form value of ``field`` showing the JSON ``value``."""
    if field.kind == BOOLEAN:
        return value is True
    if field.kind == CHOICE:
        return _choice_text(value)
    if field.kind == TEXT and isinstance(value, str):
        return value
    if field.kind == LINES and isinstance(value, list):
        return "\n".join(item if isinstance(item, str) else json.dumps(item)
                         for item in value)
    if field.kind == MAPPING and isinstance(value, dict):
        return mapping_text(value)
    if field.kind in (INTEGER, NUMBER) and _number(value):
        return json.dumps(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def mapping_text(mapping):
    """Return ``{"A": "1"}`` as ``A=1`` lines."""
    return "\n".join(f"{key}={value}" for key, value in mapping.items())


def blank_values(fields):
    """Return the values of a new form: the defaults."""
    values = dict(INTEGER_FIELDS)
    values.update({name: "" for name in TEXT_FIELDS})
    values["tag_requirements"] = []
    values["software_requirements"] = []
    values["data"] = {field.name: field.default for field in fields}
    return values


def job_values(job, fields):
    """Return form values copying ``job`` (its API JSON): a resubmission.

    ``data`` keys without a field of their own go to the "other data"
    JSON field.
    """
    values = blank_values(fields)
    for name in INTEGER_FIELDS:
        if job.get(name) is not None:
            values[name] = str(job[name])
    values["title"] = job.get("title") or ""
    values["jobqueue"] = job.get("jobqueue") or ""
    values["notes"] = job.get("notes") or ""
    values["tags"] = ", ".join(job.get("tags") or [])
    values["notified_users"] = ", ".join(job.get("notified_users") or [])
    values["parents"] = ", ".join(str(i) for i in job.get("parents") or [])
    values["environ"] = mapping_text(job.get("environ") or {})
    values["tag_requirements"] = [
        {"tag": item["tag"], "negate": bool(item.get("negate"))}
        for item in job.get("tag_requirements") or []]
    values["software_requirements"] = [
        {"software": item["software"],
         "min_version": item.get("min_version") or "",
         "max_version": item.get("max_version") or ""}
        for item in job.get("software_requirements") or []]
    data = dict(job.get("data") or {})
    for field in fields:
        if field.name in data:
            values["data"][field.name] = value_text(field,
                                                    data.pop(field.name))
        elif field.kind == BOOLEAN:
            # Absent: the job type's default, which the box shows.
            values["data"][field.name] = field.default is True
        else:
            values["data"][field.name] = ""
    if data:
        values["data_extra"] = json.dumps(data, indent=2, ensure_ascii=False)
    return values


def read_form(fields, form):
    """Return the values a person typed into the form ``form`` (a
    werkzeug ``MultiDict``), as text, ready to show again."""
    values = {name: form.get(name, "") for name in INTEGER_FIELDS}
    values.update({name: form.get(name, "") for name in TEXT_FIELDS})
    values["tag_requirements"] = [
        {"tag": tag, "negate": mode == MUST_NOT}
        for tag, mode in _rows(form, "tag_requirements", TAG_COLUMNS,
                               ("tag",))]
    values["software_requirements"] = [
        dict(zip(SOFTWARE_COLUMNS, row, strict=True))
        for row in _rows(form, "software_requirements", SOFTWARE_COLUMNS,
                         SOFTWARE_COLUMNS)]
    values["data"] = {
        field.name: (field.input_name in form if field.kind == BOOLEAN
                     else form.get(field.input_name, ""))
        for field in fields}
    return values


def _rows(form, prefix, columns, content):
    """Yield the rows of repeated inputs ``<prefix>.<column>`` with
    something typed in one of the ``content`` columns."""
    lists = [form.getlist(f"{prefix}.{column}") for column in columns]
    for row in zip_longest(*lists, fillvalue=""):
        cells = dict(zip(columns, row, strict=True))
        if any(cells[column].strip() for column in content):
            yield row


# -- values to the API's body ----------------------------------------------


def to_payload(jobtype, fields, values, other_data=True):
    """Convert form ``values`` into the body of ``POST /api/v1/jobs/``.

    Returns ``(payload, problems)``; ``problems`` lists the fields whose
    text could not be converted (a word in a number field...), named as
    the API names them. Empty optional inputs are left out, so that the
    API's defaults apply.
    """
    problems = []
    payload = {"title": values.get("title", ""), "jobtype": jobtype}
    for name in INTEGER_FIELDS:
        text = str(values.get(name, "")).strip()
        if text:
            value = _convert(INTEGER, text, name, problems)
            if value is not OMIT:
                payload[name] = value
    queue = values.get("jobqueue", "").strip()
    if queue:
        payload["jobqueue"] = queue
    for name in ("tags", "notified_users"):
        names = split_names(values.get(name, ""))
        if names:
            payload[name] = names
    parents = _job_ids(values.get("parents", ""), problems)
    if parents:
        payload["parents"] = parents
    if values.get("notes"):
        payload["notes"] = values["notes"]
    environ = parse_mapping(values.get("environ", ""), "environ", problems)
    if environ:
        payload["environ"] = environ
    requirements = _tag_requirements(values.get("tag_requirements", []))
    if requirements:
        payload["tag_requirements"] = requirements
    software = _software_requirements(
        values.get("software_requirements", []), problems)
    if software:
        payload["software_requirements"] = software
    payload["data"] = _data(fields, values.get("data", {}),
                            values.get("data_extra", ""), other_data,
                            problems)
    return payload, problems


def convert_field(field, value, problems):
    """Return the JSON value of ``field`` from its form ``value``, or
    :data:`OMIT` to leave it out (empty, or a problem appended)."""
    if field.kind == BOOLEAN:
        checked = value is True or value in ("on", "true", "1")
        # An unchecked box means false only if absent would not: when the
        # field is required or its default is true.
        if checked or field.required or field.default is True:
            return checked
        return OMIT
    text = value if isinstance(value, str) else str(value)
    if field.kind == CHOICE:
        if text == "":
            return OMIT
        for choice, choice_value in field.choices:
            if choice == text:
                return choice_value
        problems.append(f"field {field.path!r}: {text!r} is not one of "
                        f"{', '.join(c for c, _ in field.choices)}")
        return OMIT
    if field.kind == LINES:
        items = [line.strip() for line in text.splitlines() if line.strip()]
        if not items:
            return OMIT
        if field.item_kind == TEXT:
            return items
        converted = [_convert(field.item_kind, item,
                              f"{field.path}[{index}]", problems)
                     for index, item in enumerate(items)]
        return OMIT if OMIT in converted else converted
    if field.kind == MAPPING:
        return parse_mapping(text, field.path, problems) or OMIT
    if field.kind == TEXT:
        return text if text.strip() else OMIT
    if not text.strip():
        return OMIT
    return _convert(field.kind, text.strip(), field.path, problems)


def _data(fields, values, extra, other_data, problems):
    data = {}
    if other_data and extra.strip():
        value = _convert(JSON, extra, "data", problems)
        if value is not OMIT and not isinstance(value, dict):
            problems.append("field 'data': other data must be a JSON object "
                            '({"name": value, ...})')
        elif value is not OMIT:
            data.update(value)
    for field in fields:
        value = convert_field(field, values.get(field.name, ""), problems)
        if value is OMIT:
            continue
        if field.name in data:
            problems.append(f"field {field.path!r} is set twice: in its own "
                            f"field and in the other data")
        data[field.name] = value
    return data


def _convert(kind, text, path, problems):
    """Return ``text`` as a JSON value of ``kind``, or :data:`OMIT` after
    appending a problem naming ``path``."""
    text = text.strip()
    if kind == INTEGER:
        if _WHOLE.match(text):
            try:
                return int(text)
            except ValueError:  # more digits than Python converts
                pass
        problems.append(f"field {path!r}: {text!r} is not a whole number")
        return OMIT
    if kind == NUMBER:
        if _WHOLE.match(text):
            return _convert(INTEGER, text, path, problems)
        if _DECIMAL.match(text):
            value = float(text)
            if math.isfinite(value):
                return value
            problems.append(f"field {path!r}: {text} is too large")
            return OMIT
        problems.append(f"field {path!r}: {text!r} is not a number")
        return OMIT
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        problems.append(f"field {path!r} is not valid JSON: {error}")
        return OMIT


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def split_names(text):
    """Split names separated by commas or new lines; blanks and repeats
    are dropped."""
    names = (name.strip() for name in _SEPARATORS.split(text or ""))
    return list(dict.fromkeys(name for name in names if name))


def _job_ids(text, problems):
    ids = []
    for part in _IDS.split((text or "").strip()):
        if not part:
            continue
        value = part.lstrip("#")
        if value.isdigit() and value.isascii():
            ids.append(int(value))
        else:
            problems.append(f"field 'parents': {part!r} is not a job id "
                            f"(a whole number)")
    return list(dict.fromkeys(ids))


def parse_mapping(text, path, problems):
    """Return ``KEY=VALUE`` lines as a dict; blank lines are skipped."""
    mapping = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not key:
            problems.append(f"field {path!r}: line {number} must be "
                            f"NAME=VALUE, got {line.strip()!r}")
        elif key in mapping:
            problems.append(f"field {path!r}: line {number} sets {key!r} a "
                            f"second time")
        else:
            mapping[key] = value.strip()
    return mapping


def _tag_requirements(rows):
    return [{"tag": row["tag"].strip(), "negate": bool(row.get("negate"))}
            for row in rows if row.get("tag", "").strip()]


def _software_requirements(rows, problems):
    requirements = []
    for number, row in enumerate(rows, 1):
        name = row.get("software", "").strip()
        low = row.get("min_version", "").strip()
        high = row.get("max_version", "").strip()
        if not name:
            if low or high:
                problems.append(f"field 'software_requirements': row "
                                f"{number} has versions but no software")
            continue
        requirement = {"software": name}
        if low:
            requirement["min_version"] = low
        if high:
            requirement["max_version"] = high
        requirements.append(requirement)
    return requirements


# -- messages next to their fields -----------------------------------------


def problem_key(message):
    """Return the form field a problem message is about: ``end``,
    ``data.argv``, ``tag_requirements``... or None."""
    match = _FIELD.match(message)
    if match is None:
        return None
    where = match.group(1)
    if where.startswith("data."):
        name = re.split(r"[.\[]", where[len("data."):], maxsplit=1)[0]
        return "data." + name
    return re.split(r"[.\[]", where, maxsplit=1)[0]


def problems_by_field(problems):
    """Return ``{field key: [messages]}`` of :func:`problem_key`."""
    found = {}
    for message in problems:
        key = problem_key(message)
        if key is not None:
            found.setdefault(key, []).append(message)
    return found

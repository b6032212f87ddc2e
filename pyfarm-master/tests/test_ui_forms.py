"""The submit form's pure functions: JSON Schema to fields, form to body."""

import json

import pytest
from werkzeug.datastructures import MultiDict

from pyfarm.master.ui import forms

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"path": {"type": "string", "description": "A path."}},
    "properties": {
        "scene": {"type": "string", "minLength": 1, "title": "Scene file",
                  "description": "The scene to render."},
        "samples": {"type": "integer", "minimum": 1, "maximum": 4096,
                    "default": 64},
        "tiles": {"type": "integer", "exclusiveMinimum": 0,
                  "exclusiveMaximum": 17},
        "fps": {"type": "number", "exclusiveMinimum": 0, "default": 24.5},
        "denoise": {"type": "boolean", "default": True},
        "motion_blur": {"type": "boolean"},
        "format": {"enum": ["PNG", "EXR"], "default": "EXR"},
        "quality": {"enum": [1, 2, "best"]},
        "argv": {"type": "array", "items": {"type": "string"},
                 "default": ["-x", "--fast"]},
        "frames": {"type": "array", "items": {"type": "integer"}},
        "passes": {"type": "array", "items": {"type": "object"}},
        "aovs": {"type": "object",
                 "additionalProperties": {"type": "string"}},
        "settings": {"type": "object"},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "maybe": {"type": ["string", "null"]},
        "output": {"$ref": "#/$defs/path"},
        "anything": True,
    },
    "required": ["scene", "samples"],
    "additionalProperties": False,
}


def by_name(fields):
    return {field.name: field for field in fields}


def form(**values):
    """A MultiDict as a browser posts it; list values repeat a name."""
    pairs = []
    for key, value in values.items():
        key = key.replace("__", ".")
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return MultiDict(pairs)


def test_every_schema_type_becomes_a_field():
    fields = forms.schema_fields(SCHEMA)
    assert [f.name for f in fields] == list(SCHEMA["properties"])
    f = by_name(fields)
    kinds = {name: field.kind for name, field in f.items()}
    assert kinds == {
        "scene": forms.TEXT, "samples": forms.INTEGER,
        "tiles": forms.INTEGER, "fps": forms.NUMBER,
        "denoise": forms.BOOLEAN, "motion_blur": forms.BOOLEAN,
        "format": forms.CHOICE, "quality": forms.CHOICE,
        "argv": forms.LINES, "frames": forms.LINES, "passes": forms.JSON,
        "aovs": forms.MAPPING, "settings": forms.JSON,
        "either": forms.JSON, "maybe": forms.TEXT, "output": forms.TEXT,
        "anything": forms.JSON}
    assert f["scene"].label == "Scene file" and f["samples"].label == \
        "samples"
    assert f["scene"].description == "The scene to render."
    assert f["output"].description == "A path."  # through the $ref
    assert [n for n, field in f.items() if field.required] == [
        "scene", "samples"]
    assert (f["samples"].minimum, f["samples"].maximum) == (1, 4096)
    assert (f["tiles"].minimum, f["tiles"].maximum) == (1, 16)
    assert (f["fps"].minimum, f["fps"].step) == (None, "any")
    assert f["samples"].step == "1"
    assert f["format"].choices == (("PNG", "PNG"), ("EXR", "EXR"))
    assert f["quality"].choices == (("1", 1), ("2", 2), ("best", "best"))
    assert f["frames"].item_kind == forms.INTEGER
    assert f["scene"].input_name == "data.scene"
    assert f["scene"].path == "data.scene"
    assert f["argv"].multiline and not f["scene"].multiline


def test_defaults_become_form_text():
    f = by_name(forms.schema_fields(SCHEMA))
    assert f["samples"].default == "64"
    assert f["fps"].default == "24.5"
    assert f["denoise"].default is True
    assert f["motion_blur"].default is False
    assert f["format"].default == "EXR"
    assert f["argv"].default == "-x\n--fast"
    assert f["scene"].default == ""
    values = forms.blank_values(list(f.values()))
    assert values["data"]["samples"] == "64"
    assert (values["start"], values["end"], values["by"]) == ("1", "", "1")
    assert values["tag_requirements"] == []


@pytest.mark.parametrize("schema", [
    None, True, {}, {"type": "object"}, {"properties": ["x"]},
    {"type": "object", "properties": {}}])
def test_schemas_without_properties_have_no_fields(schema):
    assert forms.schema_fields(schema) == []


def test_other_data_is_offered_unless_the_schema_forbids_it():
    assert forms.allows_other_data({})
    assert forms.allows_other_data({"type": "object"})
    assert not forms.allows_other_data(SCHEMA)
    assert forms.allows_other_data({"additionalProperties": False,
                                    "patternProperties": {"^x": {}}})
    assert not forms.allows_other_data({"unevaluatedProperties": False})
    assert not forms.allows_other_data(False)


def test_the_form_converts_to_the_api_body():
    fields = forms.schema_fields(SCHEMA)
    posted = form(
        title="shot 10", start="1", end=" 240 ", by="2", batch="10",
        priority="-5", weight="3", requeue="0", cpus="8", ram="16000",
        minimum_agents="", maximum_agents="4", jobtype_version="2",
        jobqueue=" lighting ", tags="fx, gpu,\n fx", parents="12, #14 12",
        notified_users="bob", notes="  keep  ",
        environ="OCIO=/show/config.ocio\n\nLANG = C \r\n",
        tag_requirements__tag=["gpu", "", "slow"],
        tag_requirements__mode=["must", "must", "must-not"],
        software_requirements__software=["maya", "", "nuke"],
        software_requirements__min_version=["2024", "", ""],
        software_requirements__max_version=["", "", "15"],
        data__scene="/shows/a b/shot.ma", data__samples="128",
        data__tiles="", data__fps="23.976", data__denoise="on",
        data__format="PNG", data__quality="2",
        data__argv="-r\r\n  arnold  \n\n", data__frames="1\n-3",
        data__passes='[{"name": "beauty"}]', data__aovs="diffuse=d.exr",
        data__settings="", data__either='"x"', data__maybe="",
        data__output="/out", data__anything="null")
    values = forms.read_form(fields, posted)
    assert values["tag_requirements"] == [
        {"tag": "gpu", "negate": False}, {"tag": "slow", "negate": True}]
    payload, problems = forms.to_payload("maya", fields, values,
                                         other_data=False)
    assert problems == []
    assert payload == {
        "title": "shot 10", "jobtype": "maya", "start": 1, "end": 240,
        "by": 2, "batch": 10, "priority": -5, "weight": 3, "requeue": 0,
        "cpus": 8, "ram": 16000, "maximum_agents": 4,
        "jobtype_version": 2, "jobqueue": "lighting",
        "tags": ["fx", "gpu"], "notified_users": ["bob"],
        "parents": [12, 14], "notes": "  keep  ",
        "environ": {"OCIO": "/show/config.ocio", "LANG": "C"},
        "tag_requirements": [{"tag": "gpu", "negate": False},
                             {"tag": "slow", "negate": True}],
        "software_requirements": [
            {"software": "maya", "min_version": "2024"},
            {"software": "nuke", "max_version": "15"}],
        "data": {"scene": "/shows/a b/shot.ma", "samples": 128,
                 "fps": 23.976, "denoise": True, "format": "PNG",
                 "quality": 2, "argv": ["-r", "arnold"], "frames": [1, -3],
                 "passes": [{"name": "beauty"}],
                 "aovs": {"diffuse": "d.exr"}, "either": "x",
                 "output": "/out", "anything": None}}


def test_empty_inputs_are_left_out_so_the_api_decides():
    fields = forms.schema_fields(SCHEMA)
    values = forms.read_form(fields, form(title="", start="", end=""))
    payload, problems = forms.to_payload("maya", fields, values)
    assert problems == []
    # Unchecked "denoise" defaults to true: unchecking it means false.
    assert payload == {"title": "", "jobtype": "maya",
                       "data": {"denoise": False}}


@pytest.mark.parametrize("checked, default, required, expected", [
    (True, None, False, True),
    (False, None, False, "absent"),
    (False, True, False, False),
    (False, False, False, "absent"),
    (False, None, True, False),
])
def test_checkboxes(checked, default, required, expected):
    prop = {"type": "boolean"}
    if default is not None:
        prop["default"] = default
    schema = {"properties": {"flag": prop},
              "required": ["flag"] if required else []}
    fields = forms.schema_fields(schema)
    posted = form(data__flag="on") if checked else form()
    payload, problems = forms.to_payload(
        "x", fields, forms.read_form(fields, posted))
    assert problems == []
    assert payload["data"].get("flag", "absent") == expected


@pytest.mark.parametrize("inputs, message", [
    ({"start": "abc"}, "field 'start': 'abc' is not a whole number"),
    ({"end": "1.5"}, "field 'end': '1.5' is not a whole number"),
    ({"ram": "1_000"}, "field 'ram': '1_000' is not a whole number"),
    ({"cpus": "9" * 5000}, "field 'cpus': '999"),
    ({"data__samples": "many"},
     "field 'data.samples': 'many' is not a whole number"),
    ({"data__fps": "fast"}, "field 'data.fps': 'fast' is not a number"),
    ({"data__fps": "nan"}, "field 'data.fps': 'nan' is not a number"),
    ({"data__fps": "1e999"}, "field 'data.fps': 1e999 is too large"),
    ({"data__frames": "1\nx"},
     "field 'data.frames[1]': 'x' is not a whole number"),
    ({"data__aovs": "diffuse"},
     "field 'data.aovs': line 1 must be NAME=VALUE, got 'diffuse'"),
    ({"data__aovs": "a=1\na=2"},
     "field 'data.aovs': line 2 sets 'a' a second time"),
    ({"environ": "=x"}, "field 'environ': line 1 must be NAME=VALUE"),
    ({"data__passes": "[1,"}, "field 'data.passes' is not valid JSON"),
    ({"data__settings": "NaN"}, "field 'data.settings' is not valid JSON"),
    ({"data__format": "GIF"},
     "field 'data.format': 'GIF' is not one of PNG, EXR"),
    ({"parents": "12, abc"},
     "field 'parents': 'abc' is not a job id (a whole number)"),
    ({"software_requirements__min_version": "2024"},
     "field 'software_requirements': row 1 has versions but no software"),
])
def test_conversion_problems_name_the_field(inputs, message):
    fields = forms.schema_fields(SCHEMA)
    values = forms.read_form(fields, form(title="t", **inputs))
    payload, problems = forms.to_payload("maya", fields, values)
    assert len(problems) == 1, problems
    assert problems[0].startswith(message)
    assert forms.problem_key(problems[0]) == next(iter(inputs)).replace(
        "__", ".").replace("software_requirements.min_version",
                           "software_requirements")


def test_all_conversion_problems_are_reported_at_once():
    fields = forms.schema_fields(SCHEMA)
    values = forms.read_form(fields, form(start="a", end="b",
                                          data__samples="c"))
    _, problems = forms.to_payload("maya", fields, values)
    assert [forms.problem_key(p) for p in problems] == [
        "start", "end", "data.samples"]


def test_other_data_is_a_json_object_merged_into_data():
    fields = forms.schema_fields({"properties": {
        "scene": {"type": "string"}}})
    values = forms.read_form(fields, form(
        data__scene="a.ma", data_extra='{"layer": "fg", "n": 2}'))
    payload, problems = forms.to_payload("x", fields, values)
    assert problems == []
    assert payload["data"] == {"layer": "fg", "n": 2, "scene": "a.ma"}
    for extra, message in (
            ("[1]", "field 'data': other data must be a JSON object"),
            ('{"scene": "b"}', "field 'data.scene' is set twice"),
            ("{", "field 'data' is not valid JSON")):
        values = forms.read_form(fields, form(data__scene="a.ma",
                                              data_extra=extra))
        _, problems = forms.to_payload("x", fields, values)
        assert problems[0].startswith(message), problems
    # Forbidden by the schema: the field is ignored.
    values = forms.read_form(fields, form(data_extra="{"))
    assert forms.to_payload("x", fields, values, other_data=False)[1] == []


def test_a_job_fills_the_form_for_a_copy():
    fields = forms.schema_fields(SCHEMA)
    job = {
        "id": 7, "title": "shot 10", "jobtype": "maya", "start": -5,
        "end": 100, "by": 5, "batch": 2, "priority": 10, "weight": 2,
        "minimum_agents": None, "maximum_agents": 3, "requeue": 1,
        "cpus": 4, "ram": 8000, "jobtype_version": 1,
        "data": {"scene": "/a.ma", "samples": 16, "denoise": False,
                 "quality": 1, "argv": ["-r", "x"], "aovs": {"a": "b"},
                 "passes": [{"name": "beauty"}], "unknown": [1]},
        "environ": {"A": "1"}, "notes": "n", "tags": ["fx", "gpu"],
        "tag_requirements": [{"tag": "gpu", "negate": True}],
        "software_requirements": [{"software": "maya",
                                   "min_version": "2024",
                                   "max_version": None}],
        "parents": [3, 4], "jobqueue": "comp", "notified_users": ["bob"]}
    values = forms.job_values(job, fields)
    assert (values["start"], values["end"], values["minimum_agents"]) == (
        "-5", "100", "")
    assert values["tags"] == "fx, gpu" and values["parents"] == "3, 4"
    assert values["environ"] == "A=1"
    assert values["software_requirements"] == [
        {"software": "maya", "min_version": "2024", "max_version": ""}]
    data = values["data"]
    assert data["samples"] == "16" and data["denoise"] is False
    assert data["quality"] == "1" and data["argv"] == "-r\nx"
    assert data["aovs"] == "a=b" and data["format"] == ""
    assert json.loads(data["passes"]) == [{"name": "beauty"}]
    assert json.loads(values["data_extra"]) == {"unknown": [1]}
    # A checkbox the job left out shows the job type's default.
    empty = forms.job_values({"data": {}}, fields)["data"]
    assert empty["denoise"] is True and empty["motion_blur"] is False
    # Submitting the copy as it is gives the job's body back.
    posted = MultiDict()
    for key, value in values.items():
        if key == "data":
            for name, item in value.items():
                if item is True:
                    posted.add(f"data.{name}", "on")
                elif item is not False:
                    posted.add(f"data.{name}", item)
        elif key == "tag_requirements":
            for row in value:
                posted.add("tag_requirements.tag", row["tag"])
                posted.add("tag_requirements.mode",
                           forms.MUST_NOT if row["negate"] else "must")
        elif key == "software_requirements":
            for row in value:
                for column in forms.SOFTWARE_COLUMNS:
                    posted.add(f"software_requirements.{column}",
                               row[column])
        else:
            posted.add(key, value)
    payload, problems = forms.to_payload(
        "maya", fields, forms.read_form(fields, posted))
    assert problems == []
    assert payload["data"] == {**job["data"], "denoise": False}
    for name in ("start", "end", "by", "batch", "priority", "weight",
                 "maximum_agents", "requeue", "cpus", "ram", "environ",
                 "notes", "tags", "tag_requirements", "parents",
                 "jobqueue", "notified_users"):
        assert payload[name] == job[name], name
    assert payload["software_requirements"] == [
        {"software": "maya", "min_version": "2024"}]


def test_problems_are_placed_next_to_their_fields():
    problems = ["field 'end': end (1) must not be less than start (5)",
                "field 'data.argv[0]': 1 is not of type 'string'",
                "field 'data.argv' is required",
                "unknown field 'data.colour'",
                "field 'tag_requirements.0.tag': String should have at "
                "least 1 character",
                "field 'data': other data must be a JSON object",
                "no job type named 'x'"]
    assert forms.problems_by_field(problems) == {
        "end": problems[:1], "data.argv": problems[1:3],
        "data.colour": problems[3:4], "tag_requirements": problems[4:5],
        "data": problems[5:6]}

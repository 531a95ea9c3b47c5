"""The JSON API's input declared as field tables: each request body and query string is
a tuple of fields that both reads the request (types, lengths, required, the error that
names the field) and describes itself as OpenAPI 3.1 JSON Schema. A view reads its input
with ``DECLARATION.read()``; ``app.web.openapi`` documents the same object; so the two
cannot drift.

Why a table of our own rather than pydantic models: the bodies are small and flat (a few
strings, whole numbers and booleans), the error answers must keep their exact shape and
wording (``{"error": "expiresIn must be a whole number.", "code": "validation_error",
"field": "expiresIn"}``), and the schemas must stay as they are published (``type:
["string", "null"]`` for optional fields, not pydantic's ``anyOf``); a table does that in
about 200 lines, adds no start-up import, and costs nothing on the hot path (which reads
no body at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import request

from app.core.errors import ValidationError
from app.web.json_input import check_text, json_body, query_text, query_time

#: Python kind -> JSON Schema type, and the words an error uses for it (a dict is a JSON
#: object handed on as it is, e.g. a WebAuthn credential that the core checks itself)
JSON_TYPES = {str: "string", int: "integer", bool: "boolean", dict: "object", list: "array"}
_TYPE_NAMES = {
    str: "a string",
    int: "a whole number",
    bool: "true or false",
    dict: "an object",
    list: "a list of strings",
}

DATE_TIME = {"type": "string", "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Field:
    """One member of a JSON body. A missing or null optional field reads as None.

    ``max_length`` is enforced on strings (and published); a ``list`` is a list of
    strings, each at most ``max_length``, at most ``max_items`` of them. ``doc`` holds what
    is published only (description, examples, format, enum, minimum): the core checks
    those rules and names the field in its own ValidationError.
    """

    name: str
    kind: type
    required: bool = False
    max_length: int | None = None
    doc: Mapping[str, Any] = field(default_factory=dict)
    max_items: int = 100

    def read(self, body: Mapping[str, Any]) -> Any:
        """``body[name]`` checked to be of ``kind``. Raises ValidationError naming the
        field (missing when required, wrong type, too long, unstorable characters)."""
        value = body.get(self.name)
        if value is None:
            if self.required:
                raise ValidationError(f"{self.name} is required.", field=self.name)
            return None
        if self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.kind)
        if not ok:
            raise ValidationError(f"{self.name} must be {_TYPE_NAMES[self.kind]}.", field=self.name)
        if self.kind is str:
            check_text(value, self.name, self.max_length)
        if self.kind is list:
            if any(not isinstance(item, str) for item in value):
                raise ValidationError(f"{self.name} must be a list of strings.", field=self.name)
            if len(value) > self.max_items:
                raise ValidationError(
                    f"{self.name} has at most {self.max_items} items.", field=self.name
                )
            for item in value:
                check_text(item, self.name, self.max_length)
        return value

    def schema(self) -> dict[str, Any]:
        kind = JSON_TYPES[self.kind]
        schema: dict[str, Any] = {"type": kind if self.required else [kind, "null"]}
        if self.kind is list:
            items: dict[str, Any] = {"type": "string"}
            if self.max_length is not None:
                items["maxLength"] = self.max_length
            schema["items"] = items
            schema["maxItems"] = self.max_items
        elif self.max_length is not None:
            schema["maxLength"] = self.max_length
        schema.update(self.doc)
        if not self.required and "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema


@dataclass(frozen=True)
class Body:
    """A JSON object body: its fields, read in order (the first fault is the one named).
    Members not declared are ignored. A body that is not ``required`` may be left out
    altogether (no bytes at all): it reads as every field None."""

    fields: tuple[Field, ...]
    required: bool

    def __init__(self, *fields: Field, required: bool = True) -> None:
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "required", required)

    def read(self) -> dict[str, Any]:
        """The declared fields by name. Raises UnsupportedMediaType, BadRequest (see
        app.web.json_input.json_body) or ValidationError naming the field at fault."""
        if not self.required and not request.get_data(cache=True):
            return dict.fromkeys((f.name for f in self.fields), None)
        body = json_body()
        return {f.name: f.read(body) for f in self.fields}

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [f.name for f in self.fields if f.required],
            "properties": {f.name: f.schema() for f in self.fields},
        }

    def request_schema(self) -> dict[str, Any]:
        """The schema a request body is published with."""
        return self.schema()


@dataclass(frozen=True)
class SettingsBody:
    """A settings change (PUT of the policy or the retention periods): any subset of
    named settings, nothing else. ``names`` maps each API name to the name the core
    stores it by; the core checks each value and names the field at fault.
    ``properties`` is the published schema of each setting; the settings as answered and
    as changed are the component schemas ``name`` and ``name + "Change"``."""

    name: str
    what: str
    names: Mapping[str, str]
    properties: Callable[[], dict[str, Any]]
    change: str
    #: a change always sends a body
    required = True

    def read(self) -> dict[str, Any]:
        """The change under the stored names. Raises UnsupportedMediaType, BadRequest, or
        ValidationError naming an unknown field."""
        changes: dict[str, Any] = {}
        for name, value in json_body().items():
            stored = self.names.get(name)
            if stored is None:
                raise ValidationError(f"Unknown {self.what} {name!r}.", field=name[:100])
            changes[stored] = value
        return changes

    def request_schema(self) -> dict[str, Any]:
        return ref(self.name + "Change")

    def components(self) -> dict[str, Any]:
        """The component schemas: the settings as answered, and a change."""
        return {self.name: self.answer_schema(), self.name + "Change": self.schema()}

    def answer_schema(self) -> dict[str, Any]:
        """The settings as answered: every one of them."""
        properties = self.properties()
        return {"type": "object", "properties": properties, "required": list(properties)}

    def schema(self) -> dict[str, Any]:
        """The change as sent: any subset, nothing else."""
        return {
            "type": "object",
            "properties": self.properties(),
            "additionalProperties": False,
            "description": self.change,
        }


@dataclass(frozen=True)
class Param:
    """One query parameter. ``read`` kinds: text (up to 200 characters), a date-time, a
    choice among ``choices`` (API value -> core value), or a whole number up to
    ``maximum``; ``target`` is the core's name for it."""

    name: str
    schema: Mapping[str, Any]
    description: str
    target: str = ""
    choices: Mapping[str, str] | None = None
    default: str | None = None
    check: Callable[[str], None] | None = None

    def read(self) -> Any:
        """The parameter's value (or its default). Raises ValidationError naming it."""
        if self.schema.get("format") == "date-time":
            return query_time(self.name)
        value = query_text(self.name) or self.default
        if value is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                raise ValidationError(
                    f"{self.name} is one of {', '.join(self.choices)}.", field=self.name
                )
            return self.choices[value]
        if self.schema.get("type") == "integer":
            if not value.isdecimal() or len(value) > 4:
                raise ValidationError(
                    f"{self.name} is {self.schema['minimum']} to {self.schema['maximum']}.",
                    field=self.name,
                )
            return int(value)
        if self.check is not None:
            self.check(value)
        return value

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "schema": dict(self.schema),
        }


def read_query(params: Iterable[Param]) -> dict[str, Any]:
    """Every present parameter's value by its ``target`` (or name). Raises
    ValidationError naming the first one at fault."""
    values = {}
    for param in params:
        value = param.read()
        if value is not None:
            values[param.target or param.name] = value
    return values

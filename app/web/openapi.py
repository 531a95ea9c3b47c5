"""The API described as OpenAPI 3.1, served at ``/api/openapi.json`` and rendered for
people at ``/api/docs``. Nothing here restates the API: the document is assembled from
what the code runs on.

- paths and methods: the Flask routes of the documented views;
- request bodies and query strings: the field tables the views read their input with,
  answer shapes: the schemas beside the serialisers (app.web.api_shapes);
- error codes: every error class the app raises (app.core.errors.known_errors) and the
  codes of plain HTTP errors (app.web.errors.HTTP_CODES);
- descriptions, summaries, tags and security schemes: app.web.api_operations (and
  app.web.passkey_operations for the passkey routes), the words no code can say.

``/api/docs/example`` is a small page that loads ``static/js/holdfast-session.js``, for
trying the JS client from a browser's console (and for its browser test).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template
from werkzeug.routing import Rule

from app.core.errors import known_errors
from app.version import __version__
from app.web import api_operations as words
from app.web import api_shapes as shapes
from app.web import app_operations, app_shapes, passkey_operations
from app.web.api_fields import ref
from app.web.api_operations import Answer, Operation
from app.web.errors import HTTP_CODES

bp = Blueprint("openapi", __name__)

#: Flask's path variables (``<session_id>``) as OpenAPI's (``{sessionId}``)
_PATH_VARIABLE = re.compile(r"<(?:\w+:)?(\w+)>")

#: every documented operation, in the order the document lists them
OPERATIONS = (*words.OPERATIONS, *app_operations.OPERATIONS, *passkey_operations.OPERATIONS)
#: the description of each public id a path carries, by operation id
#: (a dict when a path carries several: path variable -> description)
PATH_IDS: dict[str, str | dict[str, str]] = {
    **words.PATH_IDS,
    **app_operations.PATH_IDS,
    **passkey_operations.PATH_IDS,
}


def error_codes() -> list[str]:
    """Every code an error answer can carry, sorted: the error classes' and plain HTTP
    errors'."""
    return sorted({error.code for error in known_errors()} | set(HTTP_CODES.values()))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _route(endpoint: str) -> tuple[str, str, list[str]]:
    """The OpenAPI path, the method and the path variables of the view ``endpoint``.
    Raises LookupError when no route serves it (a documented view that was removed)."""
    for rule in current_app.url_map.iter_rules(endpoint):
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if len(methods) == 1:
            return _openapi_path(rule), methods[0].lower(), [_camel(a) for a in _arguments(rule)]
    raise LookupError(f"no single-method route serves {endpoint}")


def _openapi_path(rule: Rule) -> str:
    return _PATH_VARIABLE.sub(lambda found: "{" + _camel(found[1]) + "}", rule.rule)


def _arguments(rule: Rule) -> list[str]:
    return [found[1] for found in _PATH_VARIABLE.finditer(rule.rule)]


def _answer(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.schema is not None:
        schema = ref(answer.schema) if isinstance(answer.schema, str) else answer.schema
        out["content"] = {"application/json": {"schema": schema}}
    if answer.headers:
        out["headers"] = {
            name: {"schema": {"type": "string"}, "description": text}
            for name, text in answer.headers.items()
        }
    return out


def _path_id(operation_id: str, name: str) -> str:
    described = PATH_IDS[operation_id]
    return described if isinstance(described, str) else described[name]


def _operation(operation: Operation, variables: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": operation.id,
        "tags": [operation.tag],
        "summary": operation.summary,
    }
    if operation.description:
        out["description"] = operation.description
    out["security"] = operation.security
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": _path_id(operation.id, name),
            "schema": {"type": "string", "pattern": shapes.PUBLIC_ID},
        }
        for name in variables
    ]
    parameters += [param.openapi() for param in operation.params]
    parameters += [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": text,
        }
        for name, text in operation.header_params.items()
    ]
    if parameters:
        out["parameters"] = parameters
    if operation.body is not None:
        out["requestBody"] = {
            "required": operation.body.required,
            "content": {"application/json": {"schema": operation.body.request_schema()}},
        }
    out["responses"] = {status: _answer(a) for status, a in operation.answers.items()}
    return out


def _paths() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        path, method, variables = _route(operation.endpoint)
        paths.setdefault(path, {})[method] = _operation(operation, variables)
    return paths


def _schemas() -> dict[str, Any]:
    schemas = {**shapes.SCHEMAS, **app_shapes.SCHEMAS}
    error = shapes.ERROR
    code = {**error["properties"]["code"], "examples": error_codes()}
    schemas["Error"] = {**error, "properties": {**error["properties"], "code": code}}
    return schemas


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API as this server runs it."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{current_app.config['PRODUCT_NAME']} API",
            "version": __version__,  # this release (pyproject.toml)
            "description": words.SUMMARY,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in words.TAGS.items()],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": words.SECURITY_SCHEMES,
        },
    }


@bp.get("/openapi.json")
def spec() -> Response:
    return jsonify(document())


@bp.get("/docs")
def docs() -> str:
    """The same document as a page: every operation, its input and its answers."""
    spec = document()
    operations = [
        {"method": method.upper(), "path": path, **operation}
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    tags = [tag["name"] for tag in spec["tags"]]
    return render_template(
        "api/docs.html",
        spec=spec,
        tags=tags,
        operations=operations,
        schemas=spec["components"]["schemas"],
        describe=describe_schema,
    )


@bp.get("/docs/example")
def example() -> str:
    return render_template("api/example.html")


def describe_schema(schema: dict[str, Any] | None, schemas: dict[str, Any]) -> list[dict]:
    """A schema's fields as rows for the docs page: name, type, required, notes."""
    if not schema:
        return []
    schema = _resolve(schema, schemas)
    if "allOf" in schema:
        return [row for part in schema["allOf"] for row in describe_schema(part, schemas)]
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(prop, schemas)
        rows.append(
            {
                "name": name,
                "type": _type_name(prop),
                "required": name in required,
                "notes": _notes(prop),
            }
        )
    return rows


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[1]] if ref else schema


def _type_name(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1]
    if "const" in prop:
        return repr(prop["const"]).lower()
    kind = prop.get("type", "object")
    if "allOf" in prop:
        kind = "object"
    names = kind if isinstance(kind, list) else [kind]
    if "array" in names and "items" in prop:
        item = prop["items"]
        inner = item["$ref"].rsplit("/", 1)[1] if "$ref" in item else item.get("type", "object")
        return f"array of {inner}"
    text = " or ".join(names)
    return f"{text} ({prop['format']})" if "format" in prop else text


def _notes(prop: dict[str, Any]) -> str:
    parts = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(str(v) for v in prop["enum"] if v is not None))
    if "minimum" in prop or "maximum" in prop:
        parts.append(f"{prop.get('minimum', '')}..{prop.get('maximum', '')}")
    if "maxLength" in prop:
        parts.append(f"at most {prop['maxLength']} characters")
    if "description" in prop:
        parts.append(prop["description"])
    return "; ".join(parts)

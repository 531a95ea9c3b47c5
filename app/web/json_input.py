"""Reading a JSON API request: the body as a JSON object, text from the query string,
public ids from the path. Every helper refuses bad input with a HoldfastError (so the
client gets ``{"error", "code", "field"}`` JSON with the right status), never a 500:
malformed JSON, absurd nesting, NUL bytes and lone surrogates included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import request

from app.core.errors import HoldfastError, NotFound, ValidationError

#: bodies nesting brackets deeper than this are refused unparsed (see _parsed_json)
MAX_JSON_DEPTH = 32
#: the longest text any query parameter may carry
MAX_QUERY_LENGTH = 200


class BadRequest(HoldfastError):
    code, status, message = "bad_request", 400, "The request body is not valid JSON."


class UnsupportedMediaType(HoldfastError):
    code, status, message = (
        "unsupported_media_type",
        415,
        "Send the body as JSON with Content-Type: application/json.",
    )


def json_body() -> dict[str, Any]:
    """The request's JSON object. Raises UnsupportedMediaType (not JSON), BadRequest
    (malformed, or not an object); a body over MAX_CONTENT_LENGTH answers 413."""
    if not request.is_json:
        raise UnsupportedMediaType()
    data = _parsed_json()
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object." if data is not None else None)
    return data


def _parsed_json() -> Any:
    """The body parsed as JSON, or None when it is not JSON. Nesting deeper than
    MAX_JSON_DEPTH counts as not JSON and is refused before parsing: letting the parser
    hit RecursionError (64 KiB of "[") would be caught, but leaves CPython 3.11's
    recursion bookkeeping damaged for later work in the same process."""
    raw = request.get_data(cache=True)
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(raw):
        return None
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _too_deep(raw: bytes) -> bool:
    """Whether brackets outside strings nest deeper than MAX_JSON_DEPTH."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def check_text(value: str, name: str, max_length: int | None) -> None:
    """Raises ValidationError naming ``name`` when ``value`` is longer than
    ``max_length`` or holds characters no database stores."""
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{name} is at most {max_length} characters.", field=name)
    # NUL and lone surrogates are valid JSON but no database stores them.
    if "\x00" in value or _unencodable(value):
        raise ValidationError(f"{name} contains characters that cannot be stored.", field=name)


def _unencodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def public_id(value: str) -> str:
    """A public id from the path; anything that cannot be one is simply not found
    (raises NotFound)."""
    if len(value) > 40 or "\x00" in value:
        raise NotFound()
    return value


def query_text(name: str) -> str | None:
    """Query parameter ``name``; None when absent or empty. Raises ValidationError when
    it is too long or cannot be stored."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    check_text(value, name, MAX_QUERY_LENGTH)
    return value


def query_time(name: str) -> datetime | None:
    """Query parameter ``name`` as a UTC time (ISO 8601; no zone means UTC); None when
    absent. Raises ValidationError when it is not a storable date and time."""
    value = query_text(name)
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as error:
        raise ValidationError(
            f"{name} is a date and time like 2026-03-02T09:00:00Z.", field=name
        ) from error


def utc(moment: datetime) -> datetime:
    """In UTC (a time without zone is taken as UTC). Raises OverflowError at the ends of
    the calendar, where a zone would move the time past year 1 or 9999."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

"""Keyset pagination, as every list of the admin console and the API pages: the cursor is
the sort key and id of the last row shown, so page 1,000 costs what page 1 costs (no
OFFSET scans)."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from app.core.errors import N_, ValidationError


def check_limit(limit: object, most: int) -> int:
    """``limit`` when it is a whole number from 1 to ``most``; ValidationError otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise ValidationError(N_("limit is 1 to %(most)s."), words={"most": most}, field="limit")
    return limit


def encode_cursor(sort_value: datetime, row_id: str) -> str:
    raw = json.dumps([sort_value.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValidationError for anything that is not a cursor this module made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or not isinstance(row_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValidationError(N_("That page cursor is not valid."), field="cursor") from error
    return moment, row_id

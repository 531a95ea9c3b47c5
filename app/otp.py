"""One-time codes sent by email."""

from __future__ import annotations

import secrets

CODE_DIGITS = 6


def new_code() -> str:
    """A uniformly random 6-digit code from the operating system's CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(raw: str) -> str:
    """What a person typed, without spaces or dashes ("123 456", "123-456")."""
    return "".join(ch for ch in raw if ch.isdigit())

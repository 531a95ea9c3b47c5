"""One-time codes sent by email."""

from __future__ import annotations

import secrets

CODE_DIGITS = 6


def new_code() -> str:
    """A uniformly random 6-digit code from the operating system's CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digits(raw: object) -> str | None:
    """The 6 digits of what a person typed as a code, or None when it cannot be a code
    at all: spaces and dashes between digits are fine ("123 456", "123-456"); a letter,
    another sign or a different number of digits is not. Only ASCII digits count (a
    full-width or Arabic-Indic digit would hash differently from the code we sent)."""
    if not isinstance(raw, str) or len(raw) > 32:
        return None
    digits = "".join(ch for ch in raw if ch not in " -\t")
    if len(digits) != CODE_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def normalise_code(raw: str) -> str:
    """What a person typed, without spaces or dashes ("123 456", "123-456")."""
    return "".join(ch for ch in raw if ch.isdigit())

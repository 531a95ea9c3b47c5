"""Checks that a node can serve, beyond "the database answers": the stored secrets open
under the configured keys.

Stored secrets (app.sealing) open under HOLDFAST_SECRET_KEY or one of
HOLDFAST_SECRET_KEY_FALLBACKS. When they open under none (the key changed without the old
one kept as a fallback; a database set up with the key generated in the instance folder
and then served with HOLDFAST_SECRET_KEY), nobody can sign in, so:

* ``holdfast serve`` refuses to start (it calls :func:`startup_problems`),
* ``/readyz`` answers 503 ``secrets_unavailable`` (it calls :func:`secret_problems` with
  ``thorough=False``: the signing keys and the audit chains' pseudonym keys, which every
  sign-in needs, so the probe stays cheap),
* ``holdfast secrets check`` and ``holdfast db upgrade`` print the problems and exit 1,
* a request that needs one answers a clear 503 page (app.web.errors), never a 500.

Each problem is one sentence or three: what cannot be opened, which key sealed it, which
keys this deployment has, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from app import migrate
from app.core import resealing
from app.sealing import FIX, Sealer, Unsealable, key_id

if TYPE_CHECKING:
    from app.services import Services

#: how each kind of stored secret is named in messages (one, many)
NAMES = {
    "signing_keys": ("token signing key", "token signing keys"),
    "totp_secrets": ("authenticator app secret", "authenticator app secrets"),
    "webhook_secrets": ("webhook signing secret", "webhook signing secrets"),
    "pseudonym_keys": ("audit pseudonym key", "audit pseudonym keys"),
}
QUICK = ("signing_keys", "pseudonym_keys")


def secret_problems(
    services: Services,
    *,
    thorough: bool = True,
    hints: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Why stored secrets cannot be opened, one message per kind of secret ([] when all
    open). ``thorough=False`` checks only what every sign-in needs (the signing keys and
    the audit pseudonym keys). ``hints`` are (where it is, key) pairs of keys that are not
    configured but may be the one that sealed the data (:func:`key_hints`): a message
    says so when one opens it. A database without this release's schema has nothing to
    check yet ([]; /readyz reports it as ``migrations_pending``)."""
    with services.session() as db:
        if migrate.behind(db) is not None:
            return []
        tally = resealing.check(db, services.sealer, resealing.KINDS if thorough else QUICK)
    sealer = services.sealer
    keys = f"This deployment's HOLDFAST_SECRET_KEY has key id {sealer.key_id}" + (
        f" and its fallbacks {', '.join(sealer.key_ids[1:])}."
        if len(sealer.key_ids) > 1
        else " and there are no HOLDFAST_SECRET_KEY_FALLBACKS."
    )
    problems = []
    for kind in resealing.KINDS:
        found = tally.unopenable[kind]
        if not found:
            continue
        one, many = NAMES[kind]
        sealed_with = sorted({error.sealed_with or "(from before key ids)" for _s, error in found})
        what = (
            f"The stored {one} ({found[0][0].row_id})"
            if len(found) == 1
            else f"{len(found)} stored {many}"
        )
        message = (
            f"{what} cannot be opened: sealed with secret key id {', '.join(sealed_with)}, "
            f"which is neither HOLDFAST_SECRET_KEY nor a fallback. {keys} "
        )
        opener = _opener(found[0][0], hints)
        if opener is not None:
            message += (
                f"It opens with {opener}: set HOLDFAST_SECRET_KEY_FALLBACKS to that key (or "
                "HOLDFAST_SECRET_KEY_FALLBACKS_FILE to that file), restart, and run "
                "`holdfast secrets rotate`."
            )
        else:
            message += FIX
        problems.append(message)
    return problems


def startup_problems(app: Flask) -> list[str]:
    """What ``holdfast serve`` refuses to start with: every stored secret is checked,
    with the instance folder's generated key as a hint (:func:`key_hints`)."""
    return secret_problems(app.extensions["holdfast"], hints=key_hints(app))


def key_hints(app: Flask) -> list[tuple[str, str]]:
    """Keys that may have sealed the data although they are not configured: the key
    generated in the instance folder when HOLDFAST_SECRET_KEY was not set (a database
    migrated before the variable was set was sealed with it)."""
    path = Path(app.instance_path) / "secret_key"
    try:
        generated = path.read_text().strip()
    except OSError:
        return []
    configured = [app.config["SECRET_KEY"], *app.config.get("SECRET_KEY_FALLBACKS", ())]
    if not generated or generated in configured:
        return []
    return [(f"the key generated in {path} (key id {key_id(generated.encode())})", generated)]


def _opener(stored: resealing.Stored, hints: Sequence[tuple[str, str]]) -> str | None:
    for where, key in hints:
        try:
            Sealer(key.encode()).open(stored.purpose, stored.blob, stored.row_id)
        except Unsealable:
            continue
        return where
    return None

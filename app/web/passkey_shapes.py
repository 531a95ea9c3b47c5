"""What the passkey routes of the JSON API (app.web.passkeys) read and answer, declared
as app.web.api_shapes declares the rest of the API: request bodies read with
``DECLARATION.read()``, answer schemas beside their serialisers, all published by
``app.web.openapi``.

Options are in the WebAuthn JSON form (what PublicKeyCredential.parseCreationOptionsFromJSON
and parseRequestOptionsFromJSON take); credentials in the form PublicKeyCredential.toJSON()
gives. Both are handed to and from app.core.passkeys as they are: the core checks a
credential's members and refuses a bad one with invalid_passkey.
"""

from __future__ import annotations

from typing import Any

from app.core import passkey_management
from app.models import Passkey
from app.web.api_fields import DATE_TIME, Body, Field
from app.web.api_shapes import VERIFY, obj
from app.web.session_status import iso

# --- request bodies --------------------------------------------------------------------------

CHALLENGE_ID = Field("challengeId", str, required=True, max_length=64)
CREDENTIAL = Field(
    "credential",
    dict,
    required=True,
    doc={
        "description": "The browser's answer: PublicKeyCredential.toJSON().",
        "properties": {"id": {"type": "string"}, "rawId": {"type": "string"}},
    },
)

SIGN_IN_OPTIONS = Body(
    Field(
        "tenant",
        str,
        max_length=64,
        doc={"description": "A tenant's slug: only that tenant's accounts may sign in."},
    ),
    required=False,
)

_VERIFY = {f.name: f for f in VERIFY.fields}
#: a passkey sign-in asks for its session as POST /api/auth/verify does
SIGN_IN = Body(
    CHALLENGE_ID,
    CREDENTIAL,
    *(
        _VERIFY[name]
        for name in (
            "deviceId",
            "deviceName",
            "deviceType",
            "expiresIn",
            "extendOnActivity",
            "endSessionId",
        )
    ),
)

ADD = Body(
    CHALLENGE_ID,
    CREDENTIAL,
    Field(
        "name",
        str,
        max_length=passkey_management.MAX_NAME,
        doc={"description": "What to call it; the device's name when left out."},
    ),
)


STEP_ID = Field(
    "stepId",
    str,
    required=True,
    max_length=64,
    doc={"description": "The stepId of the 403 passkey_enrolment_required answer."},
)
ENROL_OPTIONS = Body(STEP_ID)
#: finishing a sign-in by adding a first passkey (the session is the first step's)
ENROL = Body(
    STEP_ID,
    CHALLENGE_ID,
    CREDENTIAL,
    ADD.fields[2],
    _VERIFY["endSessionId"],
)

RENAME = Body(
    Field(
        "name",
        str,
        required=True,
        max_length=passkey_management.MAX_NAME,
        doc={"description": "The new name (spaces collapsed)."},
    )
)


# --- answers ---------------------------------------------------------------------------------

OPTIONS = obj(
    {
        "challengeId": {"type": "string"},
        "publicKey": {
            "type": "object",
            "description": "WebAuthn options in JSON form (challenge base64url, rpId, "
            "timeout, userVerification, allowCredentials or user/excludeCredentials).",
        },
    }
)


def options(challenge_id: str, public_key: dict[str, Any]) -> dict[str, Any]:
    """Creation or request options as OPTIONS shows them."""
    return {"challengeId": challenge_id, "publicKey": public_key}


PASSKEY = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "createdAt": DATE_TIME,
        "lastUsedAt": {**DATE_TIME, "type": ["string", "null"]},
        "createdOn": {"type": ["string", "null"], "description": "Device it was added on."},
        "lastUsedOn": {"type": ["string", "null"], "description": "Device last used on."},
        "synced": {"type": "boolean", "description": "May sync to other devices."},
    },
    "id",
    "name",
    "createdAt",
    "lastUsedAt",
)


def passkey_item(passkey: Passkey, devices: dict[str, str] | None = None) -> dict[str, Any]:
    """One passkey as PASSKEY shows it (``devices``: device names by id)."""
    devices = devices or {}
    return {
        "id": passkey.id,
        "name": passkey.name,
        "createdAt": iso(passkey.created_at),
        "lastUsedAt": iso(passkey.last_used_at),
        "createdOn": devices.get(passkey.created_device_id or ""),
        "lastUsedOn": devices.get(passkey.last_device_id or ""),
        "synced": passkey.backup_eligible,
    }


PASSKEY_LIST = obj({"passkeys": {"type": "array", "items": PASSKEY}})

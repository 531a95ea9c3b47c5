"""What a tenant's passkey policy asks of a sign-in, for the modules below app.core.passkeys
(the code sign-in, the second factor, the admin check): whether a person has a passkey,
and whether an emailed code may sign them in.

* ``allow_passkeys`` (on by default): people may add passkeys and sign in with them.
* ``require_totp_for_admins`` ("a passkey or an authenticator app for admins"): an admin
  with a passkey meets it; an admin with a passkey and no app signs in with the passkey
  (the emailed code alone is refused), one with neither adds an app at sign-in as before.
* ``require_passkeys`` (everyone): a person who has a passkey signs in with it; the
  emailed code then works only as the first step before a recovery code (for people with
  an authenticator app, who have recovery codes). A person with no passkey yet signs in
  with the emailed code, to add their first one (the security page says so); Keycloak's
  "webauthn-register" required action works the same way.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import HoldfastError
from app.models import Passkey, Tenant, User


class PasskeyRequired(HoldfastError):
    """The emailed code was right, but this person must sign in with their passkey."""

    code, status, message = (
        "passkey_required",
        403,
        "Your organisation requires you to sign in with your passkey. Use “Sign in with a "
        "passkey” on the sign-in page.",
    )


def has_passkey(db: Session, user: User) -> bool:
    """Whether the person has at least one passkey."""
    return (
        db.scalar(
            select(Passkey.id)
            .where(Passkey.user_id == user.id)
            .limit(1)
            .execution_options(all_tenants=True)
        )
        is not None
    )


def passkey_counts(tenant: Tenant) -> bool:
    """Whether the tenant's policy lets a passkey count at all."""
    return bool(tenant.allow_passkeys)


def check_code_sign_in(db: Session, user: User, tenant: Tenant, *, has_app: bool) -> bool:
    """Before an emailed code signs ``user`` in: raises PasskeyRequired where the policy
    wants their passkey instead; True when the code may only lead to a recovery code
    (require_passkeys, for a person with an app and a passkey)."""
    if not passkey_counts(tenant) or not has_passkey(db, user):
        return False
    if tenant.require_passkeys:
        if has_app:
            return True
        raise PasskeyRequired()
    if tenant.require_totp_for_admins and user.role == "admin" and not has_app:
        raise PasskeyRequired(
            "Your organisation requires admins to sign in with a passkey or an authenticator "
            "app: use “Sign in with a passkey” on the sign-in page."
        )
    return False

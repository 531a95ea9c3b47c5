"""What a tenant's passkey policy asks of a sign-in, for the modules below app.core.passkeys
(the code sign-in, the second factor, the admin check): whether a person has a passkey,
and whether an emailed code may sign them in.

* ``allow_passkeys`` (on by default): people may add passkeys and sign in with them.
* ``require_totp_for_admins`` ("a passkey or an authenticator app for admins"): an admin
  with a passkey meets it; an admin with a passkey and no app signs in with the passkey
  (the emailed code alone is refused), one with neither adds an app at sign-in as before.
* ``require_passkeys`` (everyone): a person who has a passkey signs in with it; the
  emailed code then works only as the first step before a recovery code (for people with
  an authenticator app, who have recovery codes). For a person with no passkey yet, the
  emailed code (and, for one with an app, the app's code after it) leads only to adding
  their first passkey: :class:`PasskeyEnrolmentRequired` hands over a pending step
  (app.core.passkey_enrolment) and no session exists until the passkey is stored, as
  Keycloak's "webauthn-register-passwordless" required action works.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import N_, HoldfastError
from app.models import Passkey, Tenant, User

#: what :func:`check_code_sign_in` may leave an emailed code: the way to a recovery code
#: only, or the way to adding a first passkey only
RECOVERY_ONLY = "recovery_only"
ENROL_PASSKEY = "enrol_passkey"


class PasskeyRequired(HoldfastError):
    """The emailed code was right, but this person must sign in with their passkey."""

    code, status, message = (
        "passkey_required",
        403,
        N_(
            "Your organisation requires you to sign in with your passkey. Use “Sign in with a "
            "passkey” on the sign-in page."
        ),
    )


class PasskeyEnrolmentRequired(HoldfastError):
    """The emailed code (and the app's code, where the person has an app) was right, the
    tenant requires passkeys and this person has none: adding one is the only way on
    (``details["step"]``, an app.models.MfaChallenge of purpose ``passkey``)."""

    code, status, message = (
        "passkey_enrolment_required",
        403,
        N_(
            "Your organisation requires passkeys, and you have none yet: add a passkey to "
            "finish signing in."
        ),
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


def must_enrol(db: Session, user: User, tenant: Tenant) -> bool:
    """Whether a sign-in of ``user`` may only end in adding a first passkey (the tenant
    requires passkeys and allows them, and the person has none)."""
    return passkey_counts(tenant) and bool(tenant.require_passkeys) and not has_passkey(db, user)


def check_code_sign_in(db: Session, user: User, tenant: Tenant, *, has_app: bool) -> str | None:
    """Before an emailed code signs ``user`` in: raises PasskeyRequired where the policy
    wants their passkey instead. Returns :data:`RECOVERY_ONLY` when the code may only
    lead to a recovery code (require_passkeys, a person with an app and a passkey),
    :data:`ENROL_PASSKEY` when it may only lead to adding a first passkey
    (require_passkeys, a person with none), else None."""
    if not passkey_counts(tenant):
        return None
    if not has_passkey(db, user):
        return ENROL_PASSKEY if tenant.require_passkeys else None
    if tenant.require_passkeys:
        if has_app:
            return RECOVERY_ONLY
        raise PasskeyRequired()
    if tenant.require_totp_for_admins and user.role == "admin" and not has_app:
        raise PasskeyRequired(
            N_(
                "Your organisation requires admins to sign in with a passkey or an "
                "authenticator app: use “Sign in with a passkey” on the sign-in page."
            )
        )
    return None

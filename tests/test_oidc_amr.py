"""The ID token's amr and acr follow how the Holdfast session was signed in
(UserSession.sign_in_method), one rule for every token the provider issues."""

from __future__ import annotations

import pytest

from app.core.oidc_grants import ACR_MFA, session_amr
from app.models import UserSession


@pytest.mark.parametrize(
    ("method", "amr", "acr"),
    [
        ("code", ["otp"], None),
        ("link", ["otp"], None),
        (None, ["otp"], None),  # a session from before methods were recorded
        ("app", ["otp", "mfa"], ACR_MFA),
        ("recovery", ["otp", "mfa"], ACR_MFA),
        ("passkey", ["hwk", "user", "mfa"], ACR_MFA),
    ],
)
def test_amr_and_acr_follow_the_sign_in_method(method, amr, acr):
    assert session_amr(UserSession(sign_in_method=method)) == (amr, acr)

"""A relying party built on Authlib's Flask client, as a team's own app would be: it
signs in through a Holdfast issuer (discovery, code + PKCE S256, ID token validated
against the JWKS with nonce, iss, aud and at_hash), reads userinfo, refreshes and
revokes. tests/test_oidc_rp.py serves it and drives it with Chromium.

Pages answer JSON so the test can read what the RP saw and validated."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, session, url_for


def make_rp(*, issuer: str, client_id: str, client_secret: str | None, base_url: str) -> Flask:
    """The RP app; ``base_url`` is where it is served (its redirect URI's origin)."""
    rp = Flask("authlib_rp")
    rp.secret_key = "rp-test-secret"
    rp.config["SESSION_COOKIE_NAME"] = "rp_session"
    oauth = OAuth(rp)
    holdfast = oauth.register(
        "holdfast",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if client_secret else "none",
        },
    )

    @rp.get("/login")
    def login() -> Any:
        return holdfast.authorize_redirect(f"{base_url}{url_for('callback')}")

    @rp.get("/callback")
    def callback() -> Any:
        token = holdfast.authorize_access_token()  # validates the ID token, nonce included
        session["token"] = token
        info = holdfast.userinfo(token=token)
        return jsonify(
            {"signed_in": True, "id_token_claims": dict(token["userinfo"]), "userinfo": dict(info)}
        )

    @rp.get("/refresh")
    def refresh() -> Any:
        token = session["token"]
        metadata = holdfast.load_server_metadata()
        client = holdfast._get_oauth_client()
        fresh = client.refresh_token(
            metadata["token_endpoint"], refresh_token=token["refresh_token"]
        )
        session["token"] = dict(fresh)
        return jsonify({"refreshed": True, "has_id_token": "id_token" in fresh})

    @rp.get("/revoke")
    def revoke() -> Any:
        token = session["token"]
        metadata = holdfast.load_server_metadata()
        client = holdfast._get_oauth_client()
        answer = client.revoke_token(
            metadata["revocation_endpoint"],
            token=token["refresh_token"],
            token_type_hint="refresh_token",
        )
        return jsonify({"revoked": answer.status_code})

    @rp.get("/me")
    def me() -> Any:
        token = session["token"]
        answer = holdfast.get(holdfast.load_server_metadata()["userinfo_endpoint"], token=token)
        return jsonify({"status": answer.status_code, "body": answer.json()})

    return rp

"""A rotated-in signing key is in every worker's JWKS before any worker signs with it, for
longer than a verifier may cache the JWKS: a strict offline verifier never meets a token
whose key it could not have fetched (app.tokens, docs/api.md's timeline)."""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt

from testkit.cluster import GUNICORN, Servers, call, holdfast
from testkit.tools import require_tool
from testkit.values import SECRET

RELOAD_SECONDS = 2
JWKS_MAX_AGE = 3


class StrictVerifier:
    """An offline verifier as docs/api.md recommends one: it keeps the JWKS for exactly
    the ``max-age`` the answer gave and never refetches early, not even for a ``kid`` it
    does not know (such a token is refused, as a careful verifier must)."""

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self.keys: dict[str, Any] = {}
        self.fetched_at = float("-inf")
        self.max_age = 0
        self.lock = threading.Lock()

    def _key_set(self) -> dict[str, Any]:
        with self.lock:
            if time.monotonic() - self.fetched_at >= self.max_age:
                answer = call(self.jwks_url)
                assert answer.status == 200
                cache = answer.headers["cache-control"]
                assert cache.startswith("public, max-age="), cache
                self.max_age = int(cache.rpartition("=")[2])
                self.keys = {k["kid"]: jwt.PyJWK.from_dict(k).key for k in answer.json()["keys"]}
                self.fetched_at = time.monotonic()
            return self.keys

    def verify(self, token: str) -> str:
        """The token's kid; raises when its key is not in the cached set or it is bad."""
        kid = jwt.get_unverified_header(token)["kid"]
        key = self._key_set().get(kid)
        if key is None:
            raise LookupError(f"kid {kid} is not in the JWKS fetched {self.fetched_at}")
        jwt.decode(token, key, algorithms=["ES256"], audience="holdfast")
        return kid


def test_every_token_verifies_offline_through_a_rotation_under_load(
    servers: Servers, database_url, smtp_server, make, mailbox
):
    require_tool(str(GUNICORN), "the node runs under gunicorn")
    tenant = make.tenant("keys", absolute_lifetime=3600)
    make.user("rot@keys.test", tenant)
    settings = {
        "HOLDFAST_DATABASE_URL": database_url,
        "HOLDFAST_SECRET_KEY": SECRET,
        "HOLDFAST_MAIL_URL": f"smtp://127.0.0.1:{smtp_server[1]}",
        "HOLDFAST_COOKIE_SECURE": "false",
        "HOLDFAST_KEY_RELOAD_SECONDS": str(RELOAD_SECONDS),
        "HOLDFAST_JWKS_MAX_AGE": str(JWKS_MAX_AGE),
    }
    node = servers.node(settings, workers=4)
    asked = call(f"{node.url}/api/auth/login", "POST", json_body={"email": "rot@keys.test"})
    code = mailbox.last_code("rot@keys.test")
    made = call(
        f"{node.url}/api/auth/verify",
        "POST",
        json_body={"challengeId": asked.json()["challengeId"], "code": code},
    )
    assert made.status == 201, made.text
    token = made.json()["token"]

    # Every worker has read the key ring (a request that signs or verifies loads it).
    verifier = StrictVerifier(f"{node.url}/.well-known/jwks.json")
    old_kid = verifier.verify(token)
    failures: list[str] = []
    seen: dict[str, int] = {}
    stop = threading.Event()

    def issue_and_verify() -> None:
        while not stop.is_set():
            answer = call(f"{node.url}/api/auth/session/extend", "POST", token=token)
            if answer.status != 200:
                failures.append(f"extend answered {answer.status}: {answer.text}")
                continue
            try:
                kid = verifier.verify(answer.json()["token"])
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")
                continue
            seen[kid] = seen.get(kid, 0) + 1

    threads = [threading.Thread(target=issue_and_verify) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        holdfast(settings, "keys", "rotate")
        # Published for reload + max-age + half of that, then signing: wait past it.
        deadline = time.monotonic() + 3 * (RELOAD_SECONDS + JWKS_MAX_AGE) + 10
        while time.monotonic() < deadline and len(seen) < 2:
            time.sleep(0.2)
        time.sleep(2)  # and some tokens of the new key on every worker
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert failures == [], failures[:5]
    new_kids = set(seen) - {old_kid}
    assert len(new_kids) == 1, seen
    assert seen[old_kid] > 0 and seen[new_kids.pop()] > 0, seen

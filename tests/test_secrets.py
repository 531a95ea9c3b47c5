"""Stored secrets under a secret key that can change: one sealing helper with key ids,
HOLDFAST_SECRET_KEY_FALLBACKS, `holdfast secrets rotate`, and a clear refusal (never a
500) when stored secrets open under none of the keys.

tests/data/old-d972773.sql is a database written by the code before key ids (commit
d972773, see tests/data/make_old_database.py): its secrets must keep opening."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask
from sqlalchemy import func, select, text

from app import create_app, migrate, preflight
from app.clock import FrozenClock
from app.core import audit, totp, webhooks
from app.crypto import Hasher, derive_key
from app.models import (
    Challenge,
    Device,
    Event,
    NotMeToken,
    SigningKey,
    User,
    UserSession,
    WebhookEndpoint,
)
from app.sealing import (
    MAGIC,
    PSEUDONYM_KEY,
    SIGNING_KEY,
    TOTP_SECRET,
    WEBHOOK_SECRET,
    Opened,
    Sealer,
    Unsealable,
    key_id,
)
from testkit.mail import Mailbox
from testkit.web import csrf_from, request_code

DATA = Path(__file__).parent / "data"
OLD = json.loads((DATA / "old-d972773.json").read_text())
OLD_KEY = OLD["secret_key"]
NEW_KEY = "new-secret-" + "n" * 48
OTHER_KEY = "unrelated-secret-" + "u" * 40


# --- the helper -----------------------------------------------------------------------------


def test_a_sealed_blob_names_its_key_and_opens_under_it_or_a_fallback():
    old, new = OLD_KEY.encode(), NEW_KEY.encode()
    blob = Sealer(old).seal(TOTP_SECRET, b"JBSWY3DP", "usr_1")
    assert blob.startswith(MAGIC + bytes.fromhex(key_id(old)))
    assert Sealer(old).opened(TOTP_SECRET, blob, "usr_1") == Opened(
        b"JBSWY3DP", key_id(old), current=True
    )
    assert Sealer(new, [old]).opened(TOTP_SECRET, blob, "usr_1") == Opened(
        b"JBSWY3DP", key_id(old), current=False
    )
    with pytest.raises(Unsealable) as refused:
        Sealer(new).open(TOTP_SECRET, blob, "usr_1")
    assert refused.value.sealed_with == key_id(old)
    assert key_id(old) in str(refused.value)
    assert "HOLDFAST_SECRET_KEY_FALLBACKS" in str(refused.value)
    # Bound to its row, its purpose and its header.
    for purpose, context in ((TOTP_SECRET, "usr_2"), (WEBHOOK_SECRET, "usr_1")):
        with pytest.raises(Unsealable):
            Sealer(old).open(purpose, blob, context)
    relabelled = MAGIC + bytes.fromhex(key_id(new)) + blob[len(MAGIC) + 8 :]
    with pytest.raises(Unsealable):
        Sealer(new, [old]).open(TOTP_SECRET, relabelled, "usr_1")
    # Each purpose has its own key: the same plaintext seals differently.
    assert Sealer(old).seal(PSEUDONYM_KEY, b"k", "c")[11:] != blob[11:]


# The sealing of the code before key ids, as d972773 wrote it (app/tokens.py,
# app/core/totp.py, app/core/webhooks.py): nonce | AES-GCM, each with its own key.
def _old_signing_seal(secret: bytes, kid: str, pem: bytes) -> bytes:
    nonce = os.urandom(12)
    key = AESGCM(derive_key(secret, "holdfast signing keys"))
    return nonce + key.encrypt(nonce, pem, kid.encode())


def _old_hashed_seal(secret: bytes, purpose: str, row_id: str, value: str) -> bytes:
    hasher_key = derive_key(secret, "holdfast stored secrets")
    aead = AESGCM(bytes.fromhex(hmac.new(hasher_key, purpose.encode(), hashlib.sha256).hexdigest()))
    nonce = os.urandom(12)
    return nonce + aead.encrypt(nonce, value.encode(), row_id.encode())


def test_blobs_from_before_key_ids_open_under_the_key_or_a_fallback():
    old = OLD_KEY.encode()
    blobs = [
        (SIGNING_KEY, _old_signing_seal(old, "kid1", b"pem"), "kid1", b"pem"),
        (TOTP_SECRET, _old_hashed_seal(old, "holdfast totp secrets", "usr_1", "S"), "usr_1", b"S"),
        (
            WEBHOOK_SECRET,
            _old_hashed_seal(old, "holdfast webhook secrets", "whk_1", "whsec_x"),
            "whk_1",
            b"whsec_x",
        ),
    ]
    for purpose, blob, context, plaintext in blobs:
        for sealer in (Sealer(old), Sealer(NEW_KEY.encode(), [old])):
            opened = sealer.opened(purpose, blob, context)
            assert opened.plaintext == plaintext
            assert opened.key_id == key_id(old)
            assert not opened.current  # the old form: a rotation re-seals it
        with pytest.raises(Unsealable) as refused:
            Sealer(NEW_KEY.encode()).open(purpose, blob, context)
        assert "before key ids" in str(refused.value)


def test_keyed_hashes_match_under_a_fallback_and_new_ones_use_the_current_key():
    old = Hasher(OLD_KEY.encode())
    rotated = Hasher(NEW_KEY.encode(), [OLD_KEY.encode()])
    stored = old.hash("chl_1", "123456")
    assert rotated.matches(stored, "chl_1", "123456")
    assert not rotated.matches(stored, "chl_1", "654321")
    assert not Hasher(NEW_KEY.encode()).matches(stored, "chl_1", "123456")
    assert rotated.hash("chl_1", "123456") != stored
    assert rotated.candidates("device", "usr_1", "c") == [
        Hasher(NEW_KEY.encode()).hash("device", "usr_1", "c"),
        old.hash("device", "usr_1", "c"),
    ]


# --- a database written by the code before key ids ---------------------------------------


@pytest.fixture
def old_config(app_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The app settings on a copy of the old database (SQLite, on both passes)."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript((DATA / "old-d972773.sql").read_text())
    connection.close()
    return {**app_config, "DATABASE_URL": f"sqlite:///{path}", "SECRET_KEY": OLD_KEY}


@pytest.fixture
def apps(tmp_path: Path) -> Any:
    made: list[Flask] = []

    def build(config: dict[str, Any], folder: str = "instance", **overrides: Any) -> Flask:
        app = create_app({**config, **overrides}, instance_path=tmp_path / folder)
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["holdfast"].close()


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def api_code(client: Any, mailbox: Mailbox, email: str) -> tuple[str, str]:
    before = mailbox.count(email)
    asked = client.post("/api/auth/login", json={"email": email})
    assert asked.status_code == 202
    return asked.json["challengeId"], mailbox.last_code(email, before + 1)


def everything_opens(
    app: Flask, mailbox: Mailbox, clock: FrozenClock, *, old_link: bool = True
) -> None:
    """Each kind of stored secret of the old database opens or matches through ``app``
    (``old_link``: the old "This wasn't me" link too, a hash nothing can re-make)."""
    services = app.extensions["holdfast"]
    client = app.test_client()
    # The signing key: a sign-in gets a token; sam's device cookie finds the old device.
    challenge, code = api_code(client, mailbox, "sam@acme.test")
    answer = client.post(
        "/api/auth/verify",
        json={"challengeId": challenge, "code": code, "deviceId": OLD["device_cookie"]},
    )
    assert answer.status_code == 201, answer.text
    assert services.keys.verify(answer.json["token"], clock.now()).user_id
    assert answer.json["deviceInfo"]["isNew"] is False
    assert answer.json["deviceInfo"]["trusted"] is True
    with services.session() as db:
        old_device = db.scalar(
            select(UserSession.device_id).where(UserSession.id == OLD["session_id"])
        )
        assert answer.json["deviceInfo"]["id"] == old_device
        user = db.get_one(User, OLD["totp_user"])
        expected = pyotp.TOTP(OLD["totp_secret"]).at(clock.now())
        assert totp.code_for(services.hasher, user, clock.now()) == expected
        endpoint = db.get_one(WebhookEndpoint, OLD["webhook_endpoint"])
        assert webhooks.endpoint_secret(services.hasher, endpoint) == OLD["webhook_secret"]
    # The "This wasn't me" link of the old sign-in on a new device.
    page = client.get(f"/account/not-me/{OLD['not_me_token']}")
    if old_link:
        assert page.status_code == 200 and 'id="not-me-confirm"' in page.text
    else:
        assert page.status_code == 404
    assert cli(app, "audit", "verify").exit_code == 0
    assert app.test_client().get("/readyz").json == {"status": "ready"}


def test_the_old_database_upgrades_and_every_secret_opens(old_config, apps, mailbox, clock):
    app = apps(old_config)
    upgraded = cli(app, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    # From the old release's revision to this one's head, through the pseudonym keys'.
    assert "202612060900" in upgraded.output
    assert f"revision 202611231930 -> {migrate.head()}" in upgraded.output
    # The code of the challenge in flight when the old code stopped still signs in: its
    # person has an authenticator app, whose secret (sealed the old way) gives the second
    # step's code.
    client = app.test_client()
    answer = client.post(
        "/api/auth/verify", json={"challengeId": OLD["challenge_id"], "code": OLD["code"]}
    )
    assert answer.status_code == 401 and answer.json["code"] == "mfa_required", answer.text
    answer = client.post(
        "/api/auth/verify/mfa",
        json={
            "mfaChallengeId": answer.json["mfaChallengeId"],
            "code": pyotp.TOTP(OLD["totp_secret"]).at(clock.now()),
        },
    )
    assert answer.status_code == 201, answer.text
    everything_opens(app, mailbox, clock)


def test_a_dump_of_the_audit_head_no_longer_holds_the_pseudonym_key(old_config, apps):
    app = apps(old_config)
    assert cli(app, "db", "upgrade").exit_code == 0
    services = app.extensions["holdfast"]
    ((chain, clear),) = OLD["pseudonym_keys"].items()
    with services.session() as db:
        row = db.execute(text("SELECT * FROM audit_heads")).one()
        assert audit.chain_key(db, chain) == clear  # the same key: old hashes still verify
    dumped = repr(tuple(row)).encode()
    assert clear.encode() not in dumped
    assert bytes.fromhex(clear) not in b"".join(
        value if isinstance(value, bytes) else str(value).encode() for value in row
    )
    # Nor does the file (SQLite's secure_delete overwrote the dropped column).
    services.database.dispose()
    with sqlite3.connect(old_config["DATABASE_URL"].removeprefix("sqlite:///")) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = Path(old_config["DATABASE_URL"].removeprefix("sqlite:///")).read_bytes()
    assert clear.encode() not in raw and bytes.fromhex(clear) not in raw


def test_a_new_key_with_the_old_one_as_fallback_then_rotate(old_config, apps, mailbox, clock):
    assert cli(apps(old_config), "db", "upgrade").exit_code == 0
    rotated = apps(old_config, "rotated", SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY)
    everything_opens(rotated, mailbox, clock)
    services = rotated.extensions["holdfast"]
    with services.session() as db:
        # sam's device cookie was found under the fallback and stored under the new key
        device_id = db.scalar(
            select(UserSession.device_id).where(UserSession.id == OLD["session_id"])
        )
        stored = db.get_one(Device, device_id).cookie_hash
        assert stored == services.hasher.hash(
            "device", db.get_one(Device, device_id).user_id, OLD["device_cookie"]
        )

    done = cli(rotated, "secrets", "rotate")
    assert done.exit_code == 0, done.output
    assert (
        f"Re-sealed under key id {key_id(NEW_KEY.encode())}: 1 token signing key, "
        "1 authenticator app secret, 1 webhook signing secret, 1 audit pseudonym key"
    ) in done.output
    again = cli(rotated, "secrets", "rotate")
    assert (
        "0 token signing keys, 0 authenticator app secrets, 0 webhook signing secrets, "
        "0 audit pseudonym keys (4 were under it already)" in again.output
    )
    with services.session() as db:
        events = db.scalars(select(Event).where(Event.kind == "secrets.resealed")).all()
        assert (events[0].actor_id, events[0].details) == (
            None,
            {
                "by": "operator",
                "key_id": key_id(NEW_KEY.encode()),
                "signing_keys": 1,
                "totp_secrets": 1,
                "webhook_secrets": 1,
                "pseudonym_keys": 1,
                "unopenable": 0,
            },
        )
        assert len(events) == 2  # one per run in the one tenant: an operator's action
        assert all(
            blob.startswith(MAGIC + bytes.fromhex(key_id(NEW_KEY.encode())))
            for blob in db.scalars(select(SigningKey.private_encrypted))
        )

    # The fallback can go: everything sealed opens under the new key alone.
    alone = apps(old_config, "alone", SECRET_KEY=NEW_KEY)
    checked = cli(alone, "secrets", "check")
    assert checked.exit_code == 0, checked.output
    assert "All 4 stored secrets open. 4 are sealed under the current key" in checked.output
    # (sam's device cookie was re-hashed under the new key when it was used above; the
    # link mailed under the old key is only a hash: it dies with the fallback)
    everything_opens(alone, mailbox, clock, old_link=False)
    # ...and the old key alone opens nothing any more.
    stale = apps(old_config, "stale", SECRET_KEY=OLD_KEY)
    assert stale.test_client().get("/readyz").status_code == 503


# --- keys that do not open: a clear refusal, never a 500 --------------------------------


def test_a_wrong_key_is_a_clear_503_and_a_refusal_to_start(
    app_config, apps, make, member, mailbox, clock
):
    wrong = apps(app_config, "wrong", SECRET_KEY=OTHER_KEY)
    services = wrong.extensions["holdfast"]
    ready = wrong.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["code"] == "secrets_unavailable"
    cause = ready.json["error"]
    assert "token signing key" in cause
    assert key_id(app_config["SECRET_KEY"].encode()) in cause  # what sealed it
    assert key_id(OTHER_KEY.encode()) in cause  # what this deployment has
    assert "HOLDFAST_SECRET_KEY_FALLBACKS" in cause and "holdfast secrets rotate" in cause
    problems = preflight.secret_problems(services)
    assert problems and problems[0].startswith("The stored token signing key")
    assert preflight.startup_problems(wrong) == problems

    # Every sign-in writes audit events, whose chain's key does not open either: the
    # first step already answers a page that says what is wrong (the API: JSON).
    client = wrong.test_client()
    answer = request_code(client, member.email)
    assert answer.status_code == 503
    assert "Holdfast is not configured correctly" in answer.text
    assert "Traceback" not in answer.text
    answer = client.post("/api/auth/login", json={"email": member.email})
    assert answer.status_code == 503 and answer.json["code"] == "secrets_unavailable"
    with services.session() as db:  # nothing half-done was kept
        assert db.scalar(select(func.count()).select_from(Challenge)) == 0

    checked = cli(wrong, "secrets", "check")
    assert checked.exit_code == 1 and "cannot be opened" in checked.output
    upgraded = cli(wrong, "db", "upgrade")
    assert upgraded.exit_code == 1
    assert "Already up to date" in upgraded.output and "cannot be opened" in upgraded.output

    # With the right key as a fallback, all is well again.
    fixed = apps(
        app_config, "fixed", SECRET_KEY=OTHER_KEY, SECRET_KEY_FALLBACKS=[app_config["SECRET_KEY"]]
    )
    assert fixed.test_client().get("/readyz").json == {"status": "ready"}


def test_a_signing_key_sealed_with_a_key_that_is_gone_fails_sign_in_clearly(
    app, services, member, mailbox, clock
):
    """Only the signing key is under an unknown key (the audit chain opens): the code is
    right, and the answer is a 503 that says so, with nothing kept."""
    with services.session(write=True) as db:
        key = db.scalars(select(SigningKey)).one()
        pem = services.sealer.open(SIGNING_KEY, key.private_encrypted, key.kid)
        key.private_encrypted = Sealer(OTHER_KEY.encode()).seal(SIGNING_KEY, pem, key.kid)
        db.commit()
    services.keys.reload()
    assert services.keys.problem is not None
    client = app.test_client()
    assert request_code(client, member.email).status_code == 302
    form = client.get("/login/code")
    code = mailbox.last_code(member.email)
    answer = client.post("/login/code", data={"code": code, "csrf_token": csrf_from(form.text)})
    assert answer.status_code == 503
    assert "Holdfast is not configured correctly" in answer.text
    assert client.get_cookie("holdfast_session") is None
    challenge, code = api_code(client, mailbox, member.email)
    answer = client.post("/api/auth/verify", json={"challengeId": challenge, "code": code})
    assert answer.status_code == 503 and answer.json["code"] == "secrets_unavailable"
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["problems"] == [ready.json["error"]]
    assert key_id(OTHER_KEY.encode()) in ready.json["error"]


def test_migrated_with_the_generated_key_then_served_with_an_env_key(
    app_config, apps, tmp_path, mailbox, clock, monkeypatch
):
    """The path docs/deploy.md used to lead into: `holdfast db upgrade` ran before
    HOLDFAST_SECRET_KEY was set, so the data was sealed with the key generated in the
    instance folder. The answer names that file and the setting that fixes it."""
    monkeypatch.delenv("HOLDFAST_SECRET_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'generated.db'}"
    config = {key: value for key, value in app_config.items() if key != "SECRET_KEY"}
    config["DATABASE_URL"] = url
    first = apps(config, "data")
    assert cli(first, "db", "upgrade").exit_code == 0
    assert (
        cli(first, "tenant", "create", "acme", "--name", "Acme", "--admin", "a@acme.test").exit_code
        == 0
    )
    generated = tmp_path / "data" / "secret_key"
    assert generated.exists()

    served = apps(config, "data", SECRET_KEY=NEW_KEY)
    ready = served.test_client().get("/readyz")
    assert ready.status_code == 503
    assert f"the key generated in {generated}" in ready.json["error"]
    assert "HOLDFAST_SECRET_KEY_FALLBACKS_FILE" in ready.json["error"]
    assert any(str(generated) in problem for problem in preflight.startup_problems(served))

    fixed = apps(config, "data", SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS_FILE=str(generated))
    assert fixed.test_client().get("/readyz").json == {"status": "ready"}
    assert cli(fixed, "secrets", "rotate").exit_code == 0
    alone = apps(config, "data", SECRET_KEY=NEW_KEY)
    assert alone.test_client().get("/readyz").json == {"status": "ready"}
    client = alone.test_client()
    challenge, code = api_code(client, mailbox, "a@acme.test")
    assert (
        client.post("/api/auth/verify", json={"challengeId": challenge, "code": code}).status_code
        == 201
    )


# --- cookies and codes in flight across a key change ------------------------------------


def test_a_sign_in_started_under_the_old_key_finishes_under_the_new_one(
    app, app_config, apps, member, mailbox
):
    """The flow cookie and the form's CSRF token were signed, and the code hashed, under
    the old key; the node now runs with the new key and the old one as fallback."""
    before = app.test_client()
    assert request_code(before, member.email).status_code == 302
    code = mailbox.last_code(member.email)
    form = before.get("/login/code")
    token = csrf_from(form.text)
    flow = before.get_cookie("holdfast_flow")
    assert flow is not None

    rotated = apps(
        app_config, "rotated", SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=app_config["SECRET_KEY"]
    )
    after = rotated.test_client()
    after.set_cookie("holdfast_flow", flow.value)
    answer = after.post("/login/code", data={"code": code, "csrf_token": token})
    assert answer.status_code == 302 and answer.location == "/devices", answer.text

    # Without the fallback the old flow is unknown: the person starts again, no 500.
    forgotten = apps(app_config, "forgotten", SECRET_KEY=NEW_KEY)
    other = forgotten.test_client()
    other.set_cookie("holdfast_flow", flow.value)
    answer = other.post("/login/code", data={"code": code, "csrf_token": token})
    assert answer.status_code in (302, 400)
    assert other.get_cookie("holdfast_session") is None


def test_a_not_me_link_mailed_under_the_old_key_still_works(
    app, app_config, apps, member, mailbox, clock
):
    services = app.extensions["holdfast"]
    raw = "r" * 43
    with services.session(write=True) as db:
        device = Device(
            tenant_id=member.tenant_id,
            user_id=member.id,
            cookie_hash="x" * 64,
            first_seen_at=clock.now(),
            last_seen_at=clock.now(),
        )
        db.add(device)
        db.flush()
        session = UserSession(
            tenant_id=member.tenant_id,
            user_id=member.id,
            device_id=device.id,
            created_at=clock.now(),
            authenticated_at=clock.now(),
            last_seen_at=clock.now(),
            idle_deadline=clock.now(),
            absolute_deadline=clock.now(),
            extend_on_activity=True,
            user_agent="",
            ip="",
        )
        db.add(session)
        db.flush()
        db.add(
            NotMeToken(
                tenant_id=member.tenant_id,
                token_hash=services.hasher.hash("not-me", raw),
                user_id=member.id,
                session_id=session.id,
                device_id=device.id,
                created_at=clock.now(),
                expires_at=clock.now() + timedelta(days=7),
            )
        )
        db.commit()
    rotated = apps(
        app_config, "rotated", SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=app_config["SECRET_KEY"]
    )
    found = rotated.test_client().get(f"/account/not-me/{raw}")
    assert found.status_code == 200 and 'id="not-me-confirm"' in found.text
    forgotten = apps(app_config, "forgotten", SECRET_KEY=NEW_KEY)
    unknown = forgotten.test_client().get(f"/account/not-me/{raw}")
    assert unknown.status_code == 404 and 'id="not-me-problem"' in unknown.text


# --- the audit pseudonym key, on both databases ----------------------------------------


def test_the_migration_seals_clear_pseudonym_keys_and_the_chain_still_verifies(
    app, services, make, member
):
    """Down to the revision before (keys in clear, as the old code wrote them), then up."""
    from alembic import command

    engine = services.database.engine
    make.user("kim@acme.test", make.tenant("globex"))
    config = migrate.alembic_config(engine)
    config.attributes["sealer"] = services.sealer
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "202611231930")
    with engine.connect() as connection:
        clear = dict(connection.execute(text("SELECT chain, pseudonym_key FROM audit_heads")).all())
    assert len(clear) == 2
    done = migrate.upgrade(engine, sealer=services.sealer)
    assert done.applied[0] == "202612060900"
    with services.session() as db:
        for chain, key in clear.items():
            row = db.execute(
                text("SELECT * FROM audit_heads WHERE chain = :chain"), {"chain": chain}
            ).one()
            assert key not in repr(tuple(row))
            assert bytes.fromhex(key) not in b"".join(
                bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                for value in row
            )
            assert audit.chain_key(db, chain) == key
            assert audit.verify(db, chain).intact
    # Without the Sealer (the secret key), neither way is taken: the keys stay as they are.
    bare = migrate.alembic_config(engine)
    with engine.begin() as connection:
        bare.attributes["connection"] = connection
        with pytest.raises(RuntimeError, match="holdfast db upgrade"):
            command.downgrade(bare, "202611231930")
    assert migrate.current(engine) == "202612060900"

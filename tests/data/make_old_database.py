"""Writes tests/data/old-d972773.sql and old-d972773.json with the code of commit d972773,
the last one that sealed stored secrets without a key id and kept the audit pseudonym
keys in clear (run it in a checkout of that commit: `python tests/data/make_old_database.py`).

The SQL is SQLite's own dump of a database that commit migrated and filled through its
core: a signing key, a tenant with an admin (authenticator app enabled) and a member
signed in on a trusted device (so a "This wasn't me" link exists), a code in flight,
a webhook endpoint, and their audit events. The JSON holds the raw values a person or a
program would hold (codes, cookies, secrets), which the database stores only hashed or
sealed: tests/test_secrets.py checks that today's code still opens and matches them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from sqlalchemy import select, text  # noqa: E402

from app import create_app, migrate  # noqa: E402
from app.clock import FrozenClock  # noqa: E402
from app.core import accounts, events, signin, totp, webhooks  # noqa: E402
from app.models import User, WebhookEndpoint, new_id  # noqa: E402
from testkit.values import SECRET, START  # noqa: E402

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
WEBHOOK_SECRET = "whsec_old-code-secret-0123456789abcdef"


class Capture:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, message) -> None:
        self.sent.append(message)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    path = folder / "old.db"
    mail = Capture()
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{path}",
            "SECRET_KEY": SECRET,
            "MAIL_URL": "console",
            "MAILER": mail,
            "CLOCK": FrozenClock(START),
            "BASE_URL": "http://localhost",
        },
        instance_path=folder,
    )
    services = app.extensions["holdfast"]
    migrate.upgrade(services.database.engine)
    origin = events.Origin("203.0.113.9", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0")
    with services.session(write=True) as db:
        db.add(services.keys.new_key(START))
        tenant = accounts.create_tenant(db, "acme", "Acme", now=START)
        boss = accounts.add_user(db, tenant, "boss@acme.test", role="admin", now=START)
        accounts.add_user(db, tenant, "sam@acme.test", role="member", now=START)
        boss.totp_secret = totp._seal(services.hasher, boss.id, TOTP_SECRET)
        boss.totp_enabled_at = START
        endpoint_id = new_id("whk")
        db.add(
            WebhookEndpoint(
                id=endpoint_id,
                tenant_id=tenant.id,
                url="https://hooks.example.com/holdfast",
                kinds=["session.created"],
                secret_encrypted=webhooks._seal(services.hasher, endpoint_id, WEBHOOK_SECRET),
                created_at=START,
                created_by=boss.id,
            )
        )
        db.commit()
    device_cookie = session_id = None
    for trusted in (False, True):  # a first device, then a second one: it gets a not-me link
        with services.session(write=True) as db:
            challenge = signin.request_code(
                db, services.hasher, "sam@acme.test", now=START, origin=origin
            )
            db.commit()
            challenge_id = challenge.id
        code = re.search(r"code is (\d{6})", mail.sent[-1].text).group(1)
        with services.session(write=True) as db:
            result = signin.sign_in(
                db,
                services.hasher,
                challenge_id,
                code,
                now=START,
                origin=origin,
                trust_device=trusted,
            )
            db.commit()
            device_cookie = result.device_cookie
            session_id = result.session.id
    not_me = re.search(r"/account/not-me/(\S+)", mail.sent[-1].text).group(1)
    with services.session(write=True) as db:
        waiting = signin.request_code(
            db, services.hasher, "boss@acme.test", now=START, origin=origin
        )
        db.commit()
        waiting_id = waiting.id
    waiting_code = re.search(r"code is (\d{6})", mail.sent[-1].text).group(1)
    with services.session() as db:
        heads = dict(db.execute(text("SELECT chain, pseudonym_key FROM audit_heads")).all())
        boss_id = db.scalar(select(User.id).where(User.email == "boss@acme.test"))
    services.database.dispose()
    connection = sqlite3.connect(path)
    (HERE / "old-d972773.sql").write_text("\n".join(connection.iterdump()) + "\n")
    connection.close()
    (HERE / "old-d972773.json").write_text(
        json.dumps(
            {
                "secret_key": SECRET,
                "totp_secret": TOTP_SECRET,
                "totp_user": boss_id,
                "webhook_secret": WEBHOOK_SECRET,
                "webhook_endpoint": endpoint_id,
                "device_cookie": device_cookie,
                "session_id": session_id,
                "not_me_token": not_me,
                "challenge_id": waiting_id,
                "code": waiting_code,
                "pseudonym_keys": heads,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

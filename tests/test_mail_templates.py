"""Mail bodies are Jinja templates (templates/mail/<kind>/), sent with a plain-text and
an HTML part (app.mail_templates, app.outbox)."""

from __future__ import annotations

import ast
import html
import re
from datetime import UTC, datetime

import pytest
from jinja2 import TemplateError
from markupsafe import escape
from sqlalchemy import select

from app import paths
from app.core import codes
from app.core.events import Origin
from app.mail import Message, plain_text
from app.mail_templates import MailTemplates
from app.models import OutboxMessage, User
from app.outbox import deliver_due
from app.sealing import MAIL_BODY
from testkit.core import ask
from testkit.web import csrf_from

AT = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)

#: every kind of mail with the values its caller gives (the core modules that queue it)
KINDS = {
    "sign_in_code": {
        "product": "Holdfast",
        "code": "123456",
        "minutes": 10,
        "ip": "203.0.113.9",
        "asked_at": AT,
        "link": "https://id.acme.test/login/link/chl_1/secret",
    },
    "high_alert": {
        "product": "Holdfast",
        "title": "Many wrong codes",
        "summary": "Twelve wrong codes in a minute.",
        "who": "sam@acme.test",
        "at": AT,
        "ip": None,
        "link": "https://id.acme.test/admin/alerts",
        "tenant_name": "Acme",
    },
    "recovery_code_used": {
        "product": "Holdfast",
        "tenant_name": "Acme",
        "at": AT,
        "ip": "203.0.113.9",
        "left": 1,
    },
    "passkey_added": {
        "product": "Holdfast",
        "tenant_name": "Acme",
        "name": "Chrome on <Linux>",
        "at": AT,
        "ip": "203.0.113.9",
    },
    "passkey_removed": {
        "product": "Holdfast",
        "tenant_name": "Acme",
        "name": "Chrome on <Linux>",
        "at": AT,
        "ip": "",
    },
    "person_added": {
        "product": "Holdfast",
        "tenant_name": "Acme",
        "added_by": "boss@acme.test",
        "as_admin": True,
        "email": "sam@acme.test",
        "sign_in_url": "https://id.acme.test/login",
    },
    "session_evicted": {
        "product": "Holdfast",
        "at": AT,
        "device_name": "Sam's <iPad>",
        "browser": "Safari",
        "os": "iPadOS",
        "old_signed_in_at": AT,
        "old_ip": "",
    },
    "new_device": {
        "product": "Holdfast",
        "device": None,  # no name of its own: its browser on its OS
        "browser": "Safari",
        "os": "iPadOS",
        "kind": "tablet",
        "place": "New York, United States",
        "ip": "203.0.113.9",
        "at": AT,
        "link": "https://id.acme.test/account/not-me/abc",
        "link_days": 7,
    },
}


#: values a mail says in words rather than as given: the product (the layout's), a device
#: kind ("tablet", "Tablet"), a device's browser and OS (only when it has no name)
WORDS_OF_A_FACT = {"product", "kind", "browser", "os"}


def test_every_kind_of_mail_has_a_template_and_nothing_else_does():
    folders = {p.name for p in (paths.TEMPLATES / "mail").iterdir() if p.is_dir()}
    assert folders == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_mail_has_a_subject_a_text_and_an_html_part(kind):
    message = MailTemplates().render(kind, to="sam@acme.test", values=KINDS[kind])
    assert message.to == "sam@acme.test"
    assert message.subject and "\n" not in message.subject
    assert message.html is not None and message.html.lstrip().startswith("<!doctype html>")
    assert "6 Dec 2026, 14:05 UTC" in message.text or kind == "person_added"
    for name, value in KINDS[kind].items():
        # every fact the caller gave reaches the text part as written
        if isinstance(value, str) and value and name not in WORDS_OF_A_FACT:
            assert value in message.subject + message.text, value


def test_the_html_part_escapes_what_people_typed():
    message = MailTemplates().render(
        "session_evicted", to="sam@acme.test", values=KINDS["session_evicted"]
    )
    assert "Sam's <iPad>" in message.text  # text is text
    assert message.html is not None
    assert "<iPad>" not in message.html and "Sam&#39;s &lt;iPad&gt;" in message.html


def test_the_html_part_escapes_the_phrases_built_from_facts():
    """A device's name and a place reach the HTML part escaped, also inside the phrases the
    mails build from them ("<name> (<kind>)", "<place> (IP <address>)")."""
    values = {**KINDS["new_device"], "device": "<b>Sam's</b>", "place": "<i>Köln</i> & co"}
    for language in ("en", "de"):
        message = MailTemplates().render(
            "new_device", to="sam@acme.test", values=values, language=language
        )
        assert message.html is not None
        assert "<b>" not in message.html and "<i>" not in message.html
        assert "&lt;b&gt;Sam&#39;s&lt;/b&gt;" in message.html
        assert "&lt;i&gt;Köln&lt;/i&gt; &amp; co (IP 203.0.113.9)" in message.html
        assert "<b>Sam's</b>" in message.text  # text is text
    evicted = MailTemplates().render(
        "session_evicted",
        to="sam@acme.test",
        values={**KINDS["session_evicted"], "device_name": None, "browser": "<x>", "os": "y"},
    )
    assert evicted.html is not None and "&lt;x&gt; on y" in evicted.html


def test_a_device_without_a_name_is_its_browser_on_its_os():
    english = MailTemplates().render("new_device", to="sam@acme.test", values=KINDS["new_device"])
    assert "What:  Safari on iPadOS (tablet)" in english.text


def test_a_value_the_template_needs_but_was_not_given_is_an_error():
    values = dict(KINDS["new_device"])
    del values["link"]
    with pytest.raises(TemplateError):
        MailTemplates().render("new_device", to="sam@acme.test", values=values)
    with pytest.raises(TemplateError):
        MailTemplates().render("no_such_mail", to="sam@acme.test", values={})


def test_a_code_mail_arrives_with_both_parts_saying_the_same(services, mailbox, member, clock):
    ask(services, clock, member.email, origin=Origin("203.0.113.1", ""))
    [mail] = mailbox.wait_for(member.email)
    assert mail.get_content_type() == "multipart/alternative"
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    code = plain_text(mail).split("code is ")[1][:6]
    assert code.isdigit() and code in html.get_content()
    assert "Asked for from 203.0.113.1" in plain_text(mail)


def test_a_message_queued_before_mail_had_an_html_part_still_goes_out(
    services, mailbox, member, clock
):
    """A release upgraded with mail in its queue: the plain-text body sealed alone."""
    services.sender.stop()
    with services.session(write=True) as db:
        codes.request_code(
            db,
            services.hasher,
            member.email,
            now=clock.now(),
            origin=Origin("203.0.113.1", ""),
            budgets=services.budgets,
        )
        [row] = db.scalars(select(OutboxMessage)).all()
        row.body_sealed = services.sealer.seal(MAIL_BODY, b"Your sign-in code is 654321\n", row.id)
        db.commit()
    assert deliver_due(services) == 1
    [mail] = mailbox.wait_for(member.email)
    assert not mail.is_multipart()
    assert plain_text(mail).rstrip() == "Your sign-in code is 654321"


def test_a_composed_message_without_html_is_plain_text():
    from app.mail import compose

    email = compose(
        "Holdfast <no-reply@localhost>",
        Message(to="sam@acme.test", subject="Hi", text="Hello\n"),
        message_id="<1@localhost>",
        date="Sun, 06 Dec 2026 14:05:00 +0000",
    )
    assert email.get_content_type() == "text/plain" and plain_text(email) == "Hello\n"


# --- Every mail in German ------------------------------------------------------------------

#: words German writes as English does (names of things, units, the product); anything
#: else of an English mail that shows up in its German one was left untranslated
SAME_IN_GERMAN = {
    "Holdfast",
    "Passkey",
    "IP",
    "UTC",
    "Person",
    "Tablet",
    "Admin",
    "Link",
    "in",
    "an",
}


def words_of(text: str, values: dict) -> set[str]:
    """The words of ``text`` that the template wrote, not the values it was given (an
    HTML part's words are those between its tags)."""
    for value in values.values():
        if isinstance(value, str) and value:
            text = text.replace(value, " ").replace(str(escape(value)), " ")
    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return set(re.findall(r"[A-Za-zÄÖÜäöüß]{2,}", re.sub(r"https?://\S+", " ", text)))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_mail_in_german_has_no_english_left_and_the_same_facts(kind):
    values = KINDS[kind]
    english = MailTemplates().render(kind, to="sam@acme.test", values=values)
    german = MailTemplates().render(kind, to="sam@acme.test", values=values, language="de")
    assert german.html is not None and english.html is not None
    for part in ("subject", "text", "html"):
        said_in_english = words_of(getattr(english, part), values)
        said_in_german = words_of(getattr(german, part), values)
        left = (said_in_english & said_in_german) - SAME_IN_GERMAN
        assert left == set(), f"{kind} {part}: {sorted(left)}"
    # the same facts: every value, link and code the English mail carries
    for name, value in values.items():
        if isinstance(value, str) and value and name not in WORDS_OF_A_FACT:
            assert value in german.subject + german.text, (kind, name)
    for link in re.findall(r'href="([^"]+)"', english.html):
        assert f'href="{link}"' in german.html
    assert '<html lang="de">' in german.html
    if kind != "person_added":
        assert "6. Dez. 2026, 14:05 UTC" in german.text


def test_german_counts_and_device_kinds_are_german():
    recovery = MailTemplates().render(
        "recovery_code_used",
        to="sam@acme.test",
        values={**KINDS["recovery_code_used"], "left": 3},
        language="de",
    )
    assert "Sie haben noch 3 unbenutzte Wiederherstellungscodes." in recovery.text
    phone = MailTemplates().render(
        "new_device",
        to="sam@acme.test",
        values={**KINDS["new_device"], "kind": "phone", "place": None, "ip": ""},
        language="de",
    )
    assert "Was:  Safari auf iPadOS (Smartphone)" in phone.text
    assert "Wo: einer unbekannten Adresse" in phone.text or "Wo: unbekannt" in phone.text


def test_an_invitation_goes_out_in_the_adding_admins_language(
    admin_client, admin, services, mailbox
):
    """The new person has no language yet: the mail is in the admin's (app.mail_templates),
    sent through the real SMTP server."""
    with services.session() as db:
        db.get_one(User, admin.id).language = "de"
        db.commit()
    page = admin_client.get("/admin/users").text
    answer = admin_client.post(
        "/admin/users",
        data={"csrf_token": csrf_from(page), "email": "neu@acme.test", "role": "member"},
    )
    assert answer.status_code == 302
    [mail] = mailbox.wait_for("neu@acme.test")
    assert mail["Subject"] == "Sie wurden zu Acme auf Holdfast hinzugefügt"
    text = plain_text(mail)
    assert f"{admin.email} hat Sie zu Acme auf Holdfast hinzugefügt." in text
    assert "Melden Sie sich hier mit dieser E-Mail-Adresse an (neu@acme.test):" in text
    assert "http://localhost/login" in text
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and '<html lang="de">' in html.get_content()
    with services.session() as db:  # the newcomer's own pages still follow their browser
        assert db.scalars(select(User).where(User.email == "neu@acme.test")).one().language is None


def test_every_mail_the_core_queues_names_its_recipients_language():
    """Each queue_mail call in app/ passes ``language=`` (the recipient's setting, or for
    an invitation the adding admin's): left out, a mail would silently go out in English."""
    calls = []
    for path in (paths.PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "queue_mail":
                calls.append((path.name, {k.arg for k in node.keywords}))
    assert len(calls) >= 7, calls
    assert [name for name, keywords in calls if "language" not in keywords] == []

"""Languages: pages, flash messages, page-script words and mails in English or German,
chosen by the person's own setting, else the browser's Accept-Language; and catalogs
whose compiled .mo matches their .po."""

from __future__ import annotations

import re
from io import BytesIO

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

from app import i18n
from app.core.codes import NOT_A_CODE
from app.models import Event, User
from testkit.web import csrf_from

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_a_person_signs_in_in_german(client, mailbox, member, services):
    """The browser asks for German: the sign-in pages, the emailed code (the person's
    setting decides mail, and it is set below), the devices page, the words the page
    scripts show and a slip of the code are German."""
    login = client.get("/login", headers=GERMAN)
    assert '<html lang="de">' in login.text
    assert "<h1>Anmelden</h1>" in login.text and "Code per E-Mail senden" in login.text
    assert "Accept-Language" in login.headers["Vary"]
    sent = client.post(
        "/login", data={"email": member.email, "csrf_token": csrf_from(login.text)}, headers=GERMAN
    )
    assert sent.status_code == 302
    code_page = client.get("/login/code", headers=GERMAN).text
    assert "Sehen Sie in Ihre E-Mails" in code_page
    assert f"Falls es ein Konto für <strong>{member.email}</strong> gibt" in code_page
    code = mailbox.last_code(member.email)
    slip = client.post(
        "/login/code", data={"code": "12", "csrf_token": csrf_from(code_page)}, headers=GERMAN
    )
    assert "Ein Code hat 6 Ziffern" in slip.text
    wrong = client.post(
        "/login/code",
        data={"code": f"{(int(code) + 1) % 1_000_000:06d}", "csrf_token": csrf_from(code_page)},
        headers=GERMAN,
    )
    # the core's own message, with its count, in the page's language
    assert "Dieser Code stimmt nicht. Noch 4 Versuche." in wrong.text
    signed = client.post(
        "/login/code", data={"code": code, "csrf_token": csrf_from(code_page)}, headers=GERMAN
    )
    assert signed.status_code == 302
    devices = client.get("/devices", headers=GERMAN).text
    assert "<h1>Ihre Geräte</h1>" in devices
    assert ">Abmelden</button>" in devices and ">Geräte</a>" in devices
    assert "Dieses Gerät" in devices and "Zuletzt aktiv" in devices
    assert 'data-network="Holdfast war nicht erreichbar. Prüfen Sie Ihre Verbindung."' in devices
    assert "Your devices" not in devices
    missing = client.get("/no-such-page", headers=GERMAN).text
    assert "Seite nicht gefunden" in missing and "Fehler 404" in missing


def test_the_person_setting_beats_the_browser_and_reaches_mail(
    client, mailbox, member, services, signed_in
):
    page = signed_in.get("/account/security").text
    assert 'id="language"' in page
    saved = signed_in.post(
        "/account/language", data={"language": "de", "csrf_token": csrf_from(page)}
    )
    assert saved.status_code == 302
    with services.session() as db:
        assert db.scalar(select(User.language).where(User.id == member.id)) == "de"
        event = db.scalars(select(Event).where(Event.kind == "user.language_changed")).one()
        assert event.details["new"] == "de"
    english_browser = signed_in.get("/devices", headers={"Accept-Language": "en"}).text
    assert "Sprache gespeichert." in english_browser  # the flash, in the new language
    assert "<h1>Ihre Geräte</h1>" in english_browser
    # The next code goes out in German too.
    fresh = signed_in.application.test_client()
    fresh.post(
        "/login", data={"email": member.email, "csrf_token": csrf_from(fresh.get("/login").text)}
    )
    mail = mailbox.newest(member.email, "Anmeldecode")
    assert mail["Subject"].startswith("Ihr Anmeldecode für")
    body = mail.get_body(("plain",)).get_content()
    assert "Ohne den Code kann sich niemand anmelden." in body
    assert re.search(r"Ihr Anmeldecode lautet \d{6}", body)
    # Back to the browser's choice: English for an English browser.
    page = signed_in.get("/account/security").text
    signed_in.post("/account/language", data={"language": "", "csrf_token": csrf_from(page)})
    assert (
        "<h1>Your devices</h1>" in signed_in.get("/devices", headers={"Accept-Language": "en"}).text
    )


def test_a_language_holdfast_does_not_speak_is_refused(signed_in, services, member):
    page = signed_in.get("/account/security").text
    signed_in.post("/account/language", data={"language": "xx", "csrf_token": csrf_from(page)})
    with services.session() as db:
        assert db.scalar(select(User.language).where(User.id == member.id)) is None


def test_every_catalog_is_complete_and_compiled():
    """Every word marked for translation has its German, and the committed .mo says
    exactly what its .po says (run `make messages` after editing a .po)."""
    for language in i18n.LANGUAGES[1:]:
        folder = i18n.FOLDER / language / "LC_MESSAGES"
        with (folder / "messages.po").open("rb") as f:
            po = read_po(f, locale=language)
        with (i18n.FOLDER / "messages.pot").open("rb") as f:
            template = read_po(f)
        wanted = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
        have = {
            (m.id if isinstance(m.id, str) else m.id[0])
            for m in po
            if m.id and (all(m.string) if isinstance(m.string, tuple) else m.string)
        }
        assert wanted - have == set(), f"{language}: not translated"
        mo = read_mo(BytesIO((folder / "messages.mo").read_bytes()))

        def pairs(catalog):
            return {
                (m.id if isinstance(m.id, str) else tuple(m.id)): (
                    m.string if isinstance(m.string, str) else tuple(m.string)
                )
                for m in catalog
                if m.id
            }

        assert pairs(mo) == pairs(po)
    assert i18n.translations("de").gettext(NOT_A_CODE).startswith("Ein Code hat 6 Ziffern")


def visible_words(page: str) -> str:
    """The text of a page's <main> (what a person reads), tags and scripts removed."""
    main = re.search(r"<main.*?</main>", page, re.S)
    assert main, page
    return re.sub(r"<[^>]+>", " ", main.group(0))


def test_the_security_page_and_its_banner_words_are_german(signed_in, services, member, clock):
    with services.session(write=True) as db:
        db.get_one(User, member.id).language = "de"
        db.commit()
    page = signed_in.get("/account/security").text
    words = visible_words(page)
    for german in (
        "Kontosicherheit",
        "Anmeldung in zwei Schritten",
        "Ihre Daten",
        "Authenticator-App hinzufügen",
        "Aktuelle Sicherheitswarnungen",
    ):
        assert german in words, german
    for english in (
        "Account security",
        "Two-step sign-in",
        "Your data",
        "Download my data",
        "Recent security alerts",
        "Add an authenticator app",
        "just now",
        " ago",
    ):
        assert english not in words, english
    # the session keeper's banner words, handed to the script in the page's language
    assert 'data-stay="Angemeldet bleiben"' in page
    assert 'data-countdown="Sie werden abgemeldet in {time} \u2013 "' in page


def test_a_signed_out_reason_and_the_second_step_are_german(client, services):
    page = client.get("/login?reason=idle_expired", headers=GERMAN).text
    assert "Sie wurden nach einer Zeit der Inaktivität abgemeldet." in page
    again = client.get("/login?reason=revoked_by_admin", headers=GERMAN).text
    assert "Ein Administrator hat Sie abgemeldet." in again

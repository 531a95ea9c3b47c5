"""Languages: pages, flash messages, page-script words and mails in English or German,
chosen by the person's own setting, else the browser's Accept-Language; and catalogs
whose compiled .mo matches their .po."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

from app import i18n
from app.core import alerts
from app.core.codes import NOT_A_CODE
from app.models import Event, User
from testkit.web import csrf_from

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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
                (m.context, m.id if isinstance(m.id, str) else tuple(m.id)): (
                    m.string if isinstance(m.string, str) else tuple(m.string)
                )
                for m in catalog
                if m.id
            }

        assert pairs(mo) == pairs(po)
    assert i18n.translations("de").gettext(NOT_A_CODE).startswith("Ein Code hat 6 Ziffern")


# --- every template's words are marked ---------------------------------------------------

#: text that is not words to translate: product names (Holdfast, an example app), the time
#: zone's name, example URLs and file names, HTTP status words
NOT_WORDS = re.compile(
    r"Holdfast|Grafana|UTC|openapi\.json|https?://\S+|[\w.-]+\.(?:js|json|css)\b|\bHTTP\b|[^\w\s]"
)
#: Jinja (marked {% trans %} blocks whole, then any other tag, expression or comment)
JINJA = re.compile(
    r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S
)
#: attributes people read (a button's value is its label)
WORDY_ATTRIBUTES = {"title", "aria-label", "placeholder", "alt", "hx-confirm", "data-confirm"}
#: what holds code, not words
CODE = {"script", "style", "code", "pre"}


class _Words(HTMLParser):
    """Collects the unmarked words of a template whose Jinja was blanked out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self.in_code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in CODE:
            self.in_code += 1
        button = tag == "input" and dict(attrs).get("type") in ("submit", "button")
        for name, value in attrs:
            if value and (name in WORDY_ATTRIBUTES or (button and name == "value")):
                self._check(f"{name}={value}", value)

    def handle_endtag(self, tag: str) -> None:
        if tag in CODE:
            self.in_code = max(0, self.in_code - 1)

    def handle_data(self, data: str) -> None:
        # A macro's bare attribute text (aria-describedby="...") is markup, not words.
        if not self.in_code and not re.fullmatch(r'\s*([\w-]+="[^"]*"\s*)+', data):
            self._check(data.strip(), data)

    def _check(self, shown: str, text: str) -> None:
        if re.search(r"[A-Za-z]{2,}", NOT_WORDS.sub(" ", text)):
            self.found.append((self.getpos()[0], shown[:80]))


def unmarked_words(source: str, *, html: bool = True) -> list[tuple[int, str]]:
    """(line, text) of every run of words in a template that is not marked for
    translation: outside {{ _() }}, {% trans %} and the like, and outside code."""
    source = re.sub(r"<(/?)\{\{.*?\}\}", r"<\1span", source)  # a tag named by Jinja
    blanked = JINJA.sub(lambda m: "\n" * m.group(0).count("\n"), source)
    if not html:
        return [
            (number, line.strip())
            for number, line in enumerate(blanked.splitlines(), 1)
            if re.search(r"[A-Za-z]{2,}", NOT_WORDS.sub(" ", line))
        ]
    parser = _Words()
    parser.feed(blanked)
    parser.close()
    return parser.found


def test_every_template_has_its_words_marked():
    """No template shows an English word the catalog does not hold: every text between
    tags and every title, aria-label, placeholder, alt, confirmation and button value is
    marked (``{{ _("...") }}`` or ``{% trans %}``), so German is complete."""
    templates = sorted(path for path in TEMPLATES.rglob("*") if path.suffix in (".html", ".txt"))
    assert len(templates) > 60
    unmarked = {}
    for path in templates:
        name = path.relative_to(TEMPLATES).as_posix()
        found = unmarked_words(path.read_text(), html=path.suffix == ".html")
        if found:
            unmarked[name] = found
    assert unmarked == {}


def test_the_check_finds_unmarked_words():
    """The check above would notice a slip: plain text, an attribute, a button's value."""
    assert unmarked_words("<p>End all sessions</p>") == [(1, "End all sessions")]
    assert unmarked_words('<a title="Open it" href="/">{{ _("x") }}</a>') == [(1, "title=Open it")]
    assert unmarked_words('<input type="submit" value="Save">') == [(1, "value=Save")]
    assert unmarked_words("<p>{% if a %}Nobody here yet.{% endif %}</p>") == [
        (1, "Nobody here yet.")
    ]
    marked = (
        '<p>{{ _("Saved") }} {% trans n=1 %}<b>{{ n }}</b> left{% endtrans %}</p>'
        "<code>holdfast purge</code><p>Holdfast · UTC</p>"
    )
    assert unmarked_words(marked) == []
    assert unmarked_words("Hello {{ name }},\nYour code", html=False) == [
        (1, "Hello ,"),
        (2, "Your code"),
    ]


# --- the admin console in German ---------------------------------------------------------


def test_the_admin_console_speaks_german(admin_client, services, clock, tenant, member):
    """An admin whose browser asks for German gets the admin and compliance pages in
    German, with no English left in the words checked, including a core message and the
    policy page's own validation message with its range."""
    with services.session(write=True) as db:
        alerts.raise_alert(
            db,
            "code_burst",
            "high",
            tenant_id=tenant.id,
            now=clock.now(),
            summary="Six wrong codes",
            user_id=member.id,
        )
        db.commit()

    def page(url, *, english, german, status=200):
        answer = admin_client.get(url, headers=GERMAN)
        assert answer.status_code == status, url
        assert '<html lang="de">' in answer.text
        for words in german:
            assert words in answer.text, (url, words)
        for words in english:
            assert words not in answer.text, (url, words)
        return answer.text

    page(
        "/admin",
        german=["Übersicht</a>", "Aktive Sitzungen", "Anmeldungen heute", "Protokoll</a>"],
        english=["dashboard</h1>", "Sessions live now", "Sign-ins today", "Audit log</a>"],
    )
    chart = admin_client.get("/admin/charts/live-by-kind.json", headers=GERMAN).json
    assert chart["title"] == "Aktive Sitzungen nach Geräteart"
    page(
        "/admin/users",
        german=["<h1>Personen</h1>", "Person hinzufügen", "Mitglied", "Letzte Anmeldung"],
        english=["Add a person", ">Member<", "Last sign-in"],
    )
    person = page(
        f"/admin/users/{member.id}",
        german=["Alle Sitzungen beenden", "Keinem Gerät mehr vertrauen", "Keine vertrauten"],
        english=["End all sessions", "Stop trusting", "Live sessions"],
    )
    assert "Abgemeldet in den letzten 30 Tagen" in person
    page(
        "/admin/alerts",
        german=["Sicherheitswarnungen", "1 offene Warnung.", "Hoch", "Bestätigen", "Erledigen"],
        english=["Security alerts", "open alert", ">high<", "Acknowledge<", "Resolve<"],
    )
    page(
        "/admin/audit?to=2026-01-01&from=2026-02-01",
        german=["Das Enddatum liegt vor dem Startdatum.", "Filter anwenden"],
        english=["The end date is before", "Apply filters"],
        status=422,
    )
    page(
        "/admin/reports",
        german=["Berichte und Aufbewahrung", "Protokollereignisse aufbewahren für", "Tage"],
        english=["Reports and retention", "Keep audit events for", "Save retention"],
    )
    form = admin_client.get("/admin/policy", headers=GERMAN).text
    refused = admin_client.post(
        "/admin/policy",
        data={
            "idle_timeout": "0",
            "idle_timeout_unit": "minutes",
            "absolute_lifetime": "12",
            "absolute_lifetime_unit": "hours",
            "trusted_lifetime": "30",
            "trusted_lifetime_unit": "days",
            "trusted_idle_timeout": "8",
            "trusted_idle_timeout_unit": "hours",
            "max_sessions_per_user": "10",
            "limit_mode": "evict_oldest",
            "ip_change": "allow",
            "ua_change": "allow",
            "csrf_token": csrf_from(form),
        },
        headers=GERMAN,
    )
    assert refused.status_code == 422
    assert "Es wurde nichts gespeichert." in refused.text
    assert "Inaktivitäts-Timeout muss 1 Minute bis 30 Tage sein." in refused.text
    assert "Sitzungsrichtlinie" in refused.text and "Erlaubt: 1 Minute bis 30 Tage." in refused.text
    for english in ("Nothing was saved", "must be", "Idle timeout", "Allowed:", "Save policy"):
        assert english not in refused.text


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

"""Driving the pages through the Flask test client the way a person does: reading CSRF
tokens off forms, asking for a sign-in code and signing in with the emailed one (the real
SMTP test server's mailbox), answering the second step."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.clock import FrozenClock
from app.mail import plain_text
from app.services import Services
from testkit.mail import Mailbox
from testkit.values import UA_MAC_CHROME

#: headers of an htmx request, which gets the fragment rather than the whole page
HTMX = {"HX-Request": "true"}

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def request_code(client: FlaskClient, email: str, **headers: str) -> Any:
    page = client.get("/login", headers=headers)
    return client.post(
        "/login", data={"email": email, "csrf_token": csrf_from(page.text)}, headers=headers
    )


def login(
    client: FlaskClient,
    mailbox: Mailbox,
    email: str,
    *,
    user_agent: str = UA_MAC_CHROME,
    trust: bool = False,
) -> Any:
    """Sign in as ``email`` through /login and the emailed code; returns the final answer."""
    headers = {"User-Agent": user_agent}
    before = mailbox.count(email)
    response = request_code(client, email, **headers)
    assert response.status_code == 302, response.text
    code = mailbox.last_code(email, before + 1)
    page = client.get("/login/code", headers=headers)
    data = {"code": code, "csrf_token": csrf_from(page.text)}
    if trust:
        data["trust_device"] = "y"
    return client.post("/login/code", data=data, headers=headers)


def second_step(client: FlaskClient, code: str, *, path: str = "/login/mfa", **headers: str) -> Any:
    """Answer a sign-in's second step (the app's code or a recovery code) on ``path``
    (``/login/again/mfa`` for a fresh sign-in); returns the answer."""
    page = client.get(path, headers=headers)
    assert page.status_code == 200, page.text
    return client.post(
        path, data={"code": code, "csrf_token": csrf_from(page.text)}, headers=headers
    )


def sign_in(
    app: Flask, mailbox: Mailbox, email: str, *, remote_addr: str | None = None, **options: Any
) -> FlaskClient:
    """A new browser signed in as ``email`` through the real code flow (from
    ``remote_addr`` when given); ``options`` go to :func:`login`."""
    client = app.test_client()
    if remote_addr is not None:
        client.environ_base["REMOTE_ADDR"] = remote_addr
    answer = login(client, mailbox, email, **options)
    assert answer.status_code == 302, answer.text
    return client


def token_from(client: FlaskClient, url: str = "/devices") -> str:
    return csrf_from(client.get(url).text)


def session_id_of(client: FlaskClient, services: Services, clock: FrozenClock) -> str:
    cookie = client.get_cookie("holdfast_session")
    assert cookie is not None
    return services.keys.verify(cookie.value, clock.now()).session_id


#: the sign-in link in a code mail (app.core.sign_in_links): (base, path)
LINK = re.compile(r"(http://localhost)(/login/link/\S+)")


def ask_link(client: FlaskClient, mailbox: Mailbox, email: str) -> str:
    """Ask for a code on the sign-in page; the path of the mail's sign-in link."""
    before = mailbox.count(email)
    assert request_code(client, email).status_code == 302
    mailbox.last_code(email, before + 1)
    match = LINK.search(plain_text(mailbox.to(email)[-1]))
    assert match, "no sign-in link in the mail"
    assert match.group(2) in mailbox.to(email)[-1].get_body(("html",)).get_content()
    return match.group(2)


def follow_link(client: FlaskClient, link: str) -> Any:
    """Open a sign-in link and press Continue (or only open it, where there is no button)."""
    page = client.get(link)
    if page.status_code != 200:
        return page
    return client.post(link, data={"csrf_token": csrf_from(page.text)})

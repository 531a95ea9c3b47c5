"""The small things on every page: error pages in the site's own style for every status,
a served favicon, counts in the right number, the current page marked in the
navigation, "Sign out all other sessions" only when there are others, and buttons whose
names say which device they act on."""

from __future__ import annotations

import re

import pytest

from testkit.values import UA_IPAD
from testkit.web import csrf_from, login, request_code

HTMX = {"HX-Request": "true"}


def styled(page: str) -> bool:
    return "css/app." in page and '<main class="container">' in page


@pytest.mark.parametrize(
    ("method", "path", "status", "title"),
    [
        ("get", "/no-such-page", 404, "Page not found"),
        ("get", "/sessions/sess_x/end", 405, "This page cannot do that"),
        ("get", "/admin", 403, "You cannot do that here"),
    ],
)
def test_error_pages_are_the_site_own_pages(signed_in, method, path, status, title):
    response = getattr(signed_in, method)(path)
    assert response.status_code == status
    page = response.text
    assert styled(page)
    assert f'<h1 id="error-title">{title}</h1>' in page
    assert f"Error {status}" in page
    assert "Go to your devices" in page  # a way on for a signed-in person
    assert "Something is not right" not in page and "Werkzeug" not in page


def test_an_unexpected_error_is_a_styled_500_page(new_app):
    app = new_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("kaputt")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert styled(response.text)
    assert "Something went wrong" in response.text and "kaputt" not in response.text
    assert "Sign in" in response.text  # not signed in: the way on is the sign-in page


def test_favicon_is_served(client):
    page = client.get("/login").text
    svg = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert svg is not None
    with client.get(svg.group(1)) as icon:
        assert icon.status_code == 200 and b"<svg" in icon.data
    with client.get("/favicon.ico") as ico:
        assert ico.status_code == 200 and ico.data[:4] == b"\x00\x00\x01\x00"  # an ICO file


def test_navigation_marks_the_current_page(signed_in):
    devices = signed_in.get("/devices").text
    assert re.search(r'href="/devices" aria-current="page">Devices<', devices)
    assert 'aria-current="page">Security<' not in devices
    security = signed_in.get("/account/security").text
    assert re.search(r'href="/account/security" aria-current="page">Security<', security)
    assert 'aria-current="page">Devices<' not in security


def test_sign_out_all_others_only_when_there_are_others(app, mailbox, member):
    desk = app.test_client()
    login(desk, mailbox, member.email)
    assert 'id="end-others"' not in desk.get("/devices").text  # alone: nothing to sign out
    ipad = app.test_client()
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    page = desk.get("/devices").text
    assert 'id="end-others"' in page
    answer = desk.post(
        "/sessions/end-others", headers={**HTMX, "X-CSRFToken": csrf_from(page)}
    ).text
    assert "Ended 1 other session." in answer  # one, not "1 other sessions"
    assert 'id="end-others"' not in answer  # and the button goes with the last of them
    # the whole live part is swapped, not one card: the device list comes back, without
    # the iPad (signed out and not trusted) and with this device's card
    assert '<section id="devices"' in answer and answer.count('<article class="device') == 1


def test_buttons_and_questions_name_the_device(app, mailbox, member):
    desk = app.test_client()
    login(desk, mailbox, member.email)
    login(app.test_client(), mailbox, member.email, user_agent=UA_IPAD)
    page = desk.get("/devices").text
    assert 'End session<span class="visually-hidden"> on Safari on iOS</span>' in page
    assert 'hx-confirm="End the session on Safari on iOS?' in page
    assert "End this session?" not in page
    assert 'aria-label="Name of Chrome on macOS"' in page


def test_a_rename_error_is_said_on_its_card(signed_in):
    page = signed_in.get("/devices").text
    device_id = re.search(r'id="device-(dev_[^"]+)"', page).group(1)
    answer = signed_in.post(
        f"/devices/{device_id}/name",
        data={"name": "x" * 61},
        headers={**HTMX, "X-CSRFToken": csrf_from(page)},
    )
    assert answer.status_code == 422  # htmx swaps 422: the message shows in place
    card = answer.text[answer.text.index(f'id="device-{device_id}"') :]
    assert 'role="alert"' in card[: card.index("</article>")]


def test_limit_messages_count_in_the_right_number(app, mailbox, make, tenant, member):
    make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    login(app.test_client(), mailbox, member.email)
    phone = app.test_client()
    request_code(phone, member.email)
    page = phone.get("/login/code").text
    answer = phone.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(page)},
        headers={"User-Agent": UA_IPAD},
    )
    assert answer.status_code == 409
    assert "You already have 1 active session, the most your organisation allows." in answer.text
    assert "1 active sessions" not in answer.text


def test_times_are_time_elements_the_browser_rewrites(signed_in):
    """Each printed time is a <time> with its UTC instant for static/js/times.js, and
    reads in UTC without JavaScript."""
    page = signed_in.get("/devices").text
    relative = re.findall(
        r'<time datetime="([^"]+Z)" data-format="relative" title="([^"]+)">', page
    )
    assert relative and all(title.endswith(" UTC") for _iso, title in relative)
    assert 'id="time-zone" hidden' in page  # shown by the script, which knows the zone
    assert "js/times." in page

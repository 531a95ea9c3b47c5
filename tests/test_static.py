"""Static files as browsers expect them (app/web/assets.py): fingerprinted names cached
for a year, plain names revalidated, compressed copies for browsers that take them, a
favicon, the pages' security headers, and pages themselves still never cached.

The wheel's compressed files are checked end to end in tests/test_release.py."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import Client

from app import __version__, paths
from app.web.assets import StaticFiles, digest, with_digest

YEAR = 365 * 24 * 3600


def static_links(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def max_age(cache_control: str) -> int:
    found = re.search(r"max-age=(\d+)", cache_control)
    assert found, cache_control
    return int(found[1])


def test_pages_link_fingerprinted_files_cached_for_a_year(client):
    page = client.get("/login")
    assert page.headers["Cache-Control"] == "no-store"  # the page itself: never cached
    links = static_links(page.text)
    assert {"pico.min", "app", "htmx.min", "favicon"} <= {
        Path(link).name.split(".")[0] if "min" not in link else Path(link).name.rsplit(".", 2)[0]
        for link in links
    }
    for link in links:
        name = link.removeprefix("/static/")
        plain = re.sub(r"\.([0-9a-f]{12})(\.\w+)$", r"\2", name)
        source = paths.STATIC / plain
        stat = source.stat()
        assert name == with_digest(plain, digest(str(source), stat.st_mtime_ns, stat.st_size))
        with client.get(link) as answer:
            assert answer.status_code == 200
            assert answer.data == source.read_bytes()
            cache = answer.headers["Cache-Control"]
            assert "immutable" in cache and "public" in cache and max_age(cache) >= YEAR
            # The pages' security headers, without their no-store.
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
            assert answer.headers.get("ETag") and answer.headers.get("Last-Modified")


def test_a_changed_file_gets_a_new_name():
    assert with_digest("css/app.css", "0123456789ab") == "css/app.0123456789ab.css"
    assert with_digest("vendor/chart.umd.min.js", "0123456789ab") == (
        "vendor/chart.umd.min.0123456789ab.js"
    )
    assert with_digest("LICENSE", "0123456789ab") == "LICENSE.0123456789ab"


def test_the_plain_name_answers_too_and_is_revalidated(client):
    """What a page outside Holdfast loads (the JS client): the same bytes, cached for a
    minute and then asked again, answered 304 while unchanged."""
    with client.get("/static/js/holdfast-session.js") as answer:
        assert answer.status_code == 200 and b"HoldfastSession" in answer.data
        assert answer.headers["Cache-Control"] == "max-age=60, public"
        etag = answer.headers["ETag"]
    with client.get("/static/js/holdfast-session.js", headers={"If-None-Match": etag}) as again:
        assert again.status_code == 304 and again.data == b""
    assert client.get("/static/js/no-such-file.js").status_code == 404


def test_favicon(client):
    page = client.get("/login")
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text)
    assert icon is not None
    with client.get(icon[1]) as svg:
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        assert svg.data.startswith(b"<svg")
    with client.get("/favicon.ico") as ico:
        assert ico.status_code == 200 and ico.mimetype == "image/x-icon"
        assert ico.data[:4] == b"\x00\x00\x01\x00"  # an icon file, as browsers ask for
        assert ico.headers["Cache-Control"] == "max-age=86400, public"


def test_the_footer_shows_the_version(client):
    assert f"Holdfast {__version__}" in client.get("/login").text


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    css = b"body { color: #123456; }\n" * 200
    (root / "css" / "site.css").write_bytes(css)
    (root / "css" / "site.css.gz").write_bytes(gzip.compress(css))
    return root


def inner(_environ: dict, start_response) -> list[bytes]:  # type: ignore[no-untyped-def]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"from the app"]


def test_a_compressed_copy_goes_to_browsers_that_accept_it(folder: Path):
    files = StaticFiles(inner, folder)
    hashed = "/static/" + files.fingerprinted["css/site.css"]
    client = Client(files)
    source = (folder / "css" / "site.css").read_bytes()
    with client.get(hashed, headers={"Accept-Encoding": "gzip, deflate, br"}) as squeezed:
        assert squeezed.status_code == 200 and squeezed.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(squeezed.data) == source
        assert "Accept-Encoding" in squeezed.headers["Vary"]
    with client.get(hashed) as whole:
        assert "Content-Encoding" not in whole.headers and whole.data == source
    # The compressed copy is not a file of its own, and other paths reach the app.
    assert "css/site.css.gz" not in files.fingerprinted
    with client.get("/login") as other:
        assert other.data == b"from the app"


def test_autorefresh_serves_an_edited_file_by_its_plain_name(folder: Path):
    """Under `holdfast run` a file edited while the server runs is served as it is now."""
    files = StaticFiles(inner, folder, autorefresh=True)
    client = Client(files)
    assert files.fingerprinted == {}
    with client.get("/static/css/site.css") as before:
        assert before.data == (folder / "css" / "site.css").read_bytes()
    (folder / "css" / "site.css.gz").unlink()
    (folder / "css" / "site.css").write_bytes(b"body { color: red; }")
    with client.get("/static/css/site.css") as answer:
        assert answer.data == b"body { color: red; }"
        assert answer.headers["Cache-Control"] == "max-age=0, public"


def test_with_autorefresh_pages_link_plain_names(new_app):
    app: Flask = new_app(STATIC_AUTOREFRESH=True)
    page = app.test_client().get("/login")
    assert "/static/css/app.css" in static_links(page.text)
    assert all(not re.search(r"\.[0-9a-f]{12}\.", link) for link in static_links(page.text))


@pytest.mark.browser
def test_the_page_loads_its_files_under_its_content_security_policy(browser, live_server, mailbox):
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(f"{live_server}/login")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.htmx") == "object"
    # Pico's stylesheet applied: its font stack on the body.
    assert "system-ui" in page.evaluate("getComputedStyle(document.body).fontFamily")
    assert page.evaluate("window.__violations") == []
    assert failed == []
    context.close()

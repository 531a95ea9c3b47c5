"""Static files as browsers expect them, served by the app itself (WhiteNoise), so that a
node without nginx in front (the container image) serves them as well as nginx would.

- Pages link every file by a fingerprinted name, a digest of its content in the name
  (``css/app.3f2a1b9c0d4e.css``, through ``url_for('static', ...)``): cached for a year
  as immutable, since a changed file gets a new name.
- The plain name answers too, for pages outside Holdfast that load
  ``/static/js/holdfast-session.js``: cached for a minute, then revalidated (ETag,
  Last-Modified), so an upgrade reaches them at once.
- A ``.gz`` or ``.br`` beside a file goes to a browser that accepts it (the wheel carries
  them for every text asset, see setup.py; a checkout serves its files as they are).
- ``/favicon.ico`` answers (``static/favicon.ico`` is ``static/favicon.svg`` drawn at 16,
  32 and 48 pixels), for what asks for it there; pages link the SVG.
- Static answers carry the same security headers as pages (app.web.security_headers), except
  ``Cache-Control: no-store``, which is for pages only.

Under ``holdfast run`` (``HOLDFAST_STATIC_AUTOREFRESH``, set by the development server) the
files are read afresh on every request and linked by their plain names, so an edited
file shows on the next reload (and ``/favicon.ico`` is not served); otherwise the list of
files and their digests are read once, at start-up.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from wsgiref.headers import Headers

from flask import Flask
from whitenoise import WhiteNoise

from app.web.security_headers import SECURITY_HEADERS

PREFIX = "/static/"
#: seconds a browser keeps a file fetched by its plain name before asking again
PLAIN_MAX_AGE = 60
FAVICON = "favicon.ico"
FAVICON_MAX_AGE = 86400


def init_app(app: Flask) -> None:
    """Serve ``app.static_folder`` in front of the app, and make ``url_for('static',
    filename=...)`` give fingerprinted names (unless files are read afresh)."""
    root = Path(str(app.static_folder))
    autorefresh = bool(app.config.get("STATIC_AUTOREFRESH"))
    files = StaticFiles(app.wsgi_app, root, autorefresh=autorefresh)
    app.wsgi_app = files  # type: ignore[method-assign]
    if autorefresh:
        return
    names = files.fingerprinted

    @app.url_defaults
    def _fingerprinted_name(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static":
            hashed = names.get(values.get("filename") or "")
            if hashed is not None:
                values["filename"] = hashed


class StaticFiles(WhiteNoise):
    """WhiteNoise over the static folder, with each file also under its fingerprinted
    name (:attr:`fingerprinted` maps one to the other) and ``/favicon.ico``."""

    def __init__(self, application: Any, root: Path, *, autorefresh: bool = False) -> None:
        #: plain name (``css/app.css``) -> fingerprinted name (``css/app.<digest>.css``)
        self.fingerprinted: dict[str, str] = {}
        self.immutable_urls: set[str] = set()
        super().__init__(
            application,
            autorefresh=autorefresh,
            max_age=0 if autorefresh else PLAIN_MAX_AGE,
            immutable_file_test=self._is_fingerprinted,
            add_headers_function=_add_security_headers,
        )
        self.add_files(str(root), prefix=PREFIX)
        if autorefresh:
            return  # pages link the SVG; browsers ask /favicon.ico only of pages without
        favicon = root / FAVICON
        if favicon.is_file():
            self.add_file_to_dictionary("/" + FAVICON, str(favicon))
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix()
            if not path.is_file() or name.startswith(".") or "/." in name:
                continue
            if self.is_compressed_variant(str(path)):
                continue
            stat = path.stat()
            hashed = with_digest(name, digest(str(path), stat.st_mtime_ns, stat.st_size))
            self.fingerprinted[name] = hashed
            self.immutable_urls.add(PREFIX + hashed)
            self.add_file_to_dictionary(PREFIX + hashed, str(path))

    def _is_fingerprinted(self, _path: str, url: str) -> bool:
        return url in self.immutable_urls


def _add_security_headers(headers: Headers, _path: str, url: str) -> None:
    for name, _lowered, value in SECURITY_HEADERS:
        headers[name] = value
    if url == "/" + FAVICON:
        headers["Cache-Control"] = f"max-age={FAVICON_MAX_AGE}, public"


def with_digest(name: str, digest: str) -> str:
    """``css/app.css`` -> ``css/app.<digest>.css`` (the digest before the last suffix)."""
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


@cache
def digest(path: str, _mtime_ns: int, _size: int) -> str:
    """The first 12 hex digits of the file's SHA-256 (remembered for as long as the file's
    time and size are the same: tests make many apps over the same files)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            hasher.update(block)
    return hasher.hexdigest()[:12]

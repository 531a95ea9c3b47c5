"""Structured logs: one JSON object per line, with the request id, tenant and session
public id of the request that wrote it. Tokens, codes and secrets are never logged.

``HOLDFAST_LOG_FORMAT=json`` (the default) or ``text`` (the default under ``holdfast run``);
``HOLDFAST_LOG_LEVEL`` (default INFO). A request id comes from a well-formed
``X-Request-ID`` header (a proxy's) or is made up, and is sent back in the response.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from app.internals import current_globals
from app.web.extensions import is_loopback

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
log = logging.getLogger("holdfast.request")


def new_request_id() -> str:
    """16 hex digits. A request id has to be unique, not secret, so it comes from
    Python's fast generator (reseeded in each forked worker), not the system's."""
    return f"{random.getrandbits(64):016x}"


class RequestContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            store = current_globals()
            record.request_id = store.get("request_id")
            current = store.get("current")  # app.core.sessions.Current: its plain facts
            record.tenant = current.facts.tenant.id if current else None
            record.session = current.facts.session.id if current else None
        return True


#: json.dumps(..., ensure_ascii=False) makes a new encoder for every call
_encode = json.JSONEncoder(ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    FIELDS = ("request_id", "tenant", "session", "method", "path", "status", "duration_ms")

    def __init__(self) -> None:
        super().__init__()
        # The date and time to the second, formatted once a second (a handler formats
        # one record at a time, under its lock).
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        entry = {
            "time": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the moment (a test may have replaced it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def warn_of_untrusted_proxy(environ: dict[str, Any]) -> bool:
    """Warn (and answer True) when a request carries X-Forwarded-For from a loopback
    peer while no proxy is trusted (HOLDFAST_TRUSTED_PROXIES=0): a reverse proxy on the
    same machine, whose clients all look like 127.0.0.1 to Holdfast. They then share one
    per-IP budget, sessions record the proxy's address, and loopback-only endpoints would
    be open to whoever reaches the proxy (/metrics refuses proxied requests for that
    reason). Nothing else changes: believing the header is the operator's decision.
    Called by the request hook until it has warned once, so the log says it once per
    process."""
    peer = environ.get("REMOTE_ADDR") or ""
    if not is_loopback(peer):
        return False
    logging.getLogger("holdfast.proxy").warning(
        "A request came through a proxy on this machine (X-Forwarded-For from %s), but "
        "HOLDFAST_TRUSTED_PROXIES is 0: every client looks like %s, so all share one "
        "per-IP rate limit and sessions record the proxy's address. Set "
        "HOLDFAST_TRUSTED_PROXIES to the number of proxies in front of Holdfast.",
        peer,
        peer,
    )
    return True


def init_app(app: Flask) -> None:
    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    handler = StderrHandler()
    handler.addFilter(RequestContext())
    if str(app.config.get("LOG_FORMAT", "json")) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("app", "holdfast"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False

    # Until it has warned: no proxy trusted, so a request with X-Forwarded-For is looked at.
    watch_for_proxy = not int(app.config.get("TRUSTED_PROXIES") or 0)

    @app.before_request
    def _request_id() -> None:
        nonlocal watch_for_proxy
        environ = request.environ
        given = environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = given if given and REQUEST_ID.match(given) else new_request_id()
        g.request_started = time.perf_counter()
        if watch_for_proxy and "HTTP_X_FORWARDED_FOR" in environ:
            watch_for_proxy = not warn_of_untrusted_proxy(environ)

    @app.after_request
    def _access_log(response: Response) -> Response:
        store = current_globals()
        response.headers.add("X-Request-ID", store.get("request_id", ""))  # no view sets one
        if log.isEnabledFor(logging.INFO) and request.endpoint != "static":
            started = store.get("request_started", time.perf_counter())
            # Made and handled directly: Logger.info would also look up the calling
            # frame (findCaller), which says nothing here, for every request.
            record = log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                "request",
                (),
                None,
                extra={
                    "method": request.method,
                    "path": request.path,  # the path only: query strings may carry ids
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            log.handle(record)
        return response

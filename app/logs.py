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

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
log = logging.getLogger("holdfast.request")


def new_request_id() -> str:
    """16 hex digits. A request id has to be unique, not secret, so it comes from
    Python's fast generator (reseeded in each forked worker), not the system's."""
    return f"{random.getrandbits(64):016x}"


class RequestContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            current = g.get("current")  # app.core.sessions.Current: its plain facts
            record.tenant = current.facts.tenant.id if current else None
            record.session = current.facts.session.id if current else None
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("request_id", "tenant", "session", "method", "path", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the moment (a test may have replaced it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


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

    @app.before_request
    def _request_id() -> None:
        given = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = given if given and REQUEST_ID.match(given) else new_request_id()
        g.request_started = time.perf_counter()

    @app.after_request
    def _access_log(response: Response) -> Response:
        response.headers.add("X-Request-ID", g.get("request_id", ""))  # no view sets one
        if log.isEnabledFor(logging.INFO) and request.endpoint != "static":
            started = g.get("request_started", time.perf_counter())
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,  # the path only: query strings may carry ids
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response

"""Library internals (app/internals.py): each is there on the libraries installed, and when
one is taken away, as a newer release might rename it, Holdfast logs a warning naming it and
runs on the library's plain behaviour, with the same answers. `make test-newest` runs this
file against the newest releases of the libraries."""

from __future__ import annotations

import logging
import smtplib

import flask
import flask.globals
import pytest
from flask import Flask
from flask_login import LoginManager
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.sql.compiler import SQLCompiler
from werkzeug.wrappers import Response as WerkzeugResponse

from app import internals
from app.web import authentication, unit_of_work
from app.web.extensions import login_manager


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_report_names_what_is_missing_and_only_that(caplog, monkeypatch):
    log = logging.getLogger("test.internals")
    installed = [internal.name for internal in internals.missing()]
    with caplog.at_level(logging.WARNING, logger="test.internals"):
        assert [i.name for i in internals.report_missing(log)] == installed
    assert len(warnings_of(caplog)) == len(installed)
    caplog.clear()

    monkeypatch.delattr(smtplib.SMTP, "_get_socket")
    monkeypatch.delattr(SQLCompiler, "get_from_hint_text")
    with caplog.at_level(logging.WARNING, logger="test.internals"):
        gone = [i.name for i in internals.report_missing(log)]
    assert "smtplib's smtplib.SMTP._get_socket" in gone
    assert "SQLAlchemy's sqlalchemy.dialects.sqlite.base.SQLiteCompiler.get_from_hint_text" in (
        gone
    )
    lines = warnings_of(caplog)
    assert (
        "library internal smtplib's smtplib.SMTP._get_socket is gone; using the plain "
        "behaviour: smtplib's own clients (the relay's name looked up without the timeout)"
    ) in lines
    assert len(lines) == len(gone)


def test_the_app_factory_reports_at_start_up(app_config, tmp_path, monkeypatch, caplog):
    monkeypatch.delattr(WerkzeugResponse, "get_wsgi_headers")
    reported: list[str] = []
    real = internals.report_missing
    monkeypatch.setattr(
        internals,
        "report_missing",
        lambda log: reported.extend(i.name for i in real(log)) or [],
    )
    from app import create_app

    app = create_app(app_config, instance_path=tmp_path)
    try:
        assert "Werkzeug's werkzeug.wrappers.Response.get_wsgi_headers" in reported
    finally:
        app.extensions["holdfast"].close()


def test_without_get_wsgi_headers_answers_are_flask_responses(monkeypatch):
    assert internals.response_class() is internals.HoldfastResponse
    monkeypatch.delattr(WerkzeugResponse, "get_wsgi_headers")
    assert internals.response_class() is flask.Response


def test_without_get_from_hint_text_sqlite_gets_its_own_compiler(monkeypatch):
    table = Table("sessions", MetaData(), Column("id", Integer, primary_key=True))
    statement = select(table).with_hint(table, "INDEXED BY ix_sessions_live", "sqlite")
    dialect = sqlite.dialect()
    ours = internals.sqlite_compiler()
    assert ours is internals.SQLiteCompilerWithHints
    assert "INDEXED BY ix_sessions_live" in str(ours(dialect, statement))

    monkeypatch.delattr(SQLCompiler, "get_from_hint_text")
    plain = internals.sqlite_compiler()
    assert plain is SQLiteCompiler
    monkeypatch.undo()  # SQLAlchemy itself calls it when a statement has hints
    assert "INDEXED BY" not in str(plain(dialect, statement))
    assert str(plain(dialect, statement)).startswith("SELECT sessions.id")


def test_without_get_socket_mail_uses_smtplibs_own_clients(monkeypatch):
    looked_up: list[str] = []

    def resolve(host: str, port: int, *, timeout: float) -> str:
        looked_up.append(host)
        return "127.0.0.1"

    smtp, smtps = internals.smtp_clients(resolve)
    assert issubclass(smtp, smtplib.SMTP) and smtp is not smtplib.SMTP
    assert issubclass(smtps, smtplib.SMTP_SSL) and smtps is not smtplib.SMTP_SSL

    monkeypatch.delattr(smtplib.SMTP, "_get_socket")
    assert internals.smtp_clients(resolve) == (smtplib.SMTP, smtplib.SMTP_SSL)


class NewerLoginManager(LoginManager):
    """Flask-Login as a release that renamed its remember-me hook would be."""

    @property
    def _update_remember_cookie(self):  # type: ignore[override]
        raise AttributeError("_update_remember_cookie")

    def init_app(self, app: Flask, add_context_processor: bool = True) -> None:
        app.after_request(self._refresh_remember_cookie)

    def _refresh_remember_cookie(self, response: flask.Response) -> flask.Response:
        return LoginManager._update_remember_cookie(self, response)


def test_flask_logins_remember_cookie_hook_is_dropped_or_left_in(app):
    assert login_manager._update_remember_cookie not in app.after_request_funcs[None]

    plain = Flask(__name__)
    newer = NewerLoginManager()
    newer.init_app(plain)
    assert internals.drop_remember_cookie_refresh(plain, newer) is False
    assert newer._refresh_remember_cookie in plain.after_request_funcs[None]  # left working

    older = Flask(__name__)
    manager = LoginManager(older)
    assert internals.drop_remember_cookie_refresh(older, manager) is True
    assert older.after_request_funcs[None] == []


def test_without_request_ctx_and_get_current_object_the_hot_path_answers_the_same(
    signed_in, monkeypatch
):
    token = signed_in.get_cookie("holdfast_session").value
    bearer = {"Authorization": f"Bearer {token}"}
    fast = signed_in.get("/auth/verify", headers=bearer)
    assert fast.status_code == 200

    monkeypatch.delattr(flask.globals, "request_ctx")
    plain_ctx = internals._request_ctx()
    assert isinstance(plain_ctx, internals._PlainRequestContext)
    monkeypatch.setattr(authentication, "request_ctx", plain_ctx)
    monkeypatch.setattr(authentication, "current_globals", internals._plain_globals)
    monkeypatch.setattr(unit_of_work, "current_globals", internals._plain_globals)

    plain = signed_in.get("/auth/verify", headers=bearer)
    assert plain.status_code == 200
    assert plain.json == fast.json
    assert plain.headers["X-Holdfast-Session"] == fast.headers["X-Holdfast-Session"]
    assert signed_in.get("/devices").status_code == 200  # a page, through Flask-Login
    refused = signed_in.get("/auth/verify", headers={"Authorization": "Bearer nonsense"})
    assert refused.status_code == 401 and refused.json["code"] == "invalid_session"


def test_current_application_is_the_app_itself(app):
    with app.app_context():
        assert internals.current_application() is app

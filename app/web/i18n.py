"""The language of a page: the signed-in person's own setting (users.language), else the
browser's Accept-Language among the languages Holdfast speaks (app.i18n), else English.

Flask-Babel translates the templates (``{{ _("...") }}``), flash messages and the words
the page scripts show, which the templates hand them in data-* attributes. The page's
``<html lang>`` says the language chosen. The core's own messages (the errors it raises)
are English and marked for the catalog (app.core.errors); a page says them with
:func:`said`. The JSON API answers them in English: a client tells errors apart by their
``code``, and the ``error`` text is for the developer reading it (docs/api.md)."""

from __future__ import annotations

from flask import Flask, Response, after_this_request, g, request
from flask_babel import Babel, get_locale, gettext, ngettext
from flask_login import current_user

from app import i18n
from app.core.errors import HoldfastError, Phrase

babel = Babel()


def select_locale() -> str:
    """The page's language (see the module docstring). Reading a person's setting loads
    their row, once per page that shows translated words; the hot path never asks. A
    page answered while the database is down (``g.database_down``, app.web.errors) goes
    by Accept-Language alone: it must not load a row."""
    if not g.get("database_down") and current_user.is_authenticated:
        own = i18n.supported(current_user.user.language)
        if own:
            return own

    @after_this_request
    def _vary(response: Response) -> Response:
        response.vary.add("Accept-Language")  # a cache keeps one page per language
        return response

    return request.accept_languages.best_match(i18n.LANGUAGES, default="en") or "en"


def said(error: HoldfastError) -> str:
    """``error``'s message in the page's language, its placeholders filled in (a
    :class:`~app.core.errors.Phrase` among them in the page's language too)."""
    words = {
        name: gettext(value) if isinstance(value, Phrase) else value
        for name, value in error.words.items()
    }
    if error.plural is not None and error.count is not None:
        words.pop("num", None)
        return ngettext(error.template, error.plural, error.count, **words)
    return gettext(error.template, **words)


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(i18n.FOLDER),
    )
    app.jinja_env.globals["page_language"] = lambda: str(get_locale() or "en")
    app.jinja_env.globals["language_names"] = i18n.NAMES
    app.jinja_env.globals["said_error"] = said  # a core error shown on a page

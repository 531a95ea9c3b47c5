"""Languages: which ones Holdfast speaks, and its translation catalogs.

Pages (Flask-Babel, app.web.i18n), mails (app.mail_templates) and the words the page
scripts show (data-* attributes in the templates) are all translated from one gettext
catalog per language, ``app/translations/<lang>/LC_MESSAGES/messages.po``, extracted with
``make messages`` (pybabel, babel.cfg). No Flask here: the mail renderer in the worker
and the CLI uses it too.

The compiled ``messages.mo`` is committed beside its ``.po`` rather than built at
set-up: the wheel, the sdist and the container image then carry it with no Babel step
in any build, and ``tests/test_i18n.py`` fails when a ``.mo`` is older than its ``.po``
(``make messages`` compiles both).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.support import NullTranslations, Translations

from app.paths import PACKAGE


def N_(text: str) -> str:
    """Marks words for the catalog (``pybabel extract -k N_``) and returns them
    unchanged: code with no language (the core, the mail renderer) marks its words here,
    and whoever shows them translates them in the reader's language."""
    return text


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Marks a message's two English forms as one plural entry of the catalog
    (``pybabel extract -k N_plural:1,2``); returns them unchanged."""
    return singular, plural


#: where the catalogs live, in a checkout and in the wheel alike
FOLDER: Path = PACKAGE / "translations"
#: the languages Holdfast speaks, English (the source language) first
LANGUAGES = ("en", "de")
#: each language's name in itself, for the language setting
NAMES = {"en": "English", "de": "Deutsch"}


def supported(language: str | None) -> str | None:
    """``language`` when Holdfast speaks it, else None."""
    return language if language in LANGUAGES else None


@cache
def translations(language: str | None) -> NullTranslations:
    """The catalog of ``language`` (English, and any language Holdfast does not speak,
    get the source words)."""
    if language in (None, "en") or language not in LANGUAGES:
        return NullTranslations()
    return Translations.load(str(FOLDER), [language])

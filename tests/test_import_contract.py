"""The import contract `make lint` enforces (tools/import_contract.py): interface -> core
-> store, no web framework below the interface, no cycles, imports inside functions
counted."""

from __future__ import annotations

import sys
from pathlib import Path

from tools import import_contract


def test_app_keeps_the_contract():
    assert import_contract.breaches(Path(import_contract.ROOT / "app")) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "app"


def test_an_upward_import_inside_a_function_is_a_breach(tmp_path):
    package = write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/models.py": "def f():\n    from app.core import rules\n",
            "app/core/__init__.py": "",
            "app/core/rules.py": "from app import models\n",
            "app/web/__init__.py": "",
            "app/web/views.py": "from app.core import rules\n",
        },
    )
    found = import_contract.breaches(package)
    assert "app/models.py:2: store module app.models imports core module app.core.rules" in found
    assert "import cycle: app.core.rules, app.models" in found
    assert len(found) == 2  # web -> core and core -> store are the way down


def test_the_core_may_not_import_flask_or_the_web(tmp_path):
    package = write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/core/__init__.py": "",
            "app/core/rules.py": "from flask import request\nfrom app.web import views\n",
            "app/web/__init__.py": "",
            "app/web/views.py": "import flask\n",
            "app/webhook_transport.py": "import werkzeug\n",
        },
    )
    assert import_contract.breaches(package) == [
        "app/core/rules.py:1: core module app.core.rules imports flask",
        "app/core/rules.py:2: core module app.core.rules imports interface module app.web.views",
        # a module whose name merely starts with "web" is not the web layer
        "app/webhook_transport.py:1: store module app.webhook_transport imports werkzeug",
    ]


def test_the_command_line_reports_and_fails(tmp_path, capsys):
    package = write(tmp_path, {"app/__init__.py": "", "app/db.py": "import flask_login\n"})
    assert import_contract.main([sys.argv[0], str(package)]) == 1
    assert "store module app.db imports flask_login" in capsys.readouterr().out
    assert import_contract.main([sys.argv[0]]) == 0

"""`make lint`: dump the OpenAPI document the app serves and lint it with Redocly CLI
(pinned in package.json, rules in redocly.yaml). Exits with Redocly's status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def dump(folder: Path) -> Path:
    """The document of an app made for the purpose (a throwaway SQLite, never read; no
    mail sender thread, which would look for tables this database never gets)."""
    from app import create_app

    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'lint.db'}",
            "SECRET_KEY": "openapi-lint-" + "x" * 40,
            "MAIL_URL": "console",
            "MAIL_SENDER": "worker",
            "LOG_LEVEL": "WARNING",
        },
        instance_path=folder,
    )
    try:
        answer = app.test_client().get("/api/openapi.json")
        if answer.status_code != 200:
            raise SystemExit(f"GET /api/openapi.json answered {answer.status_code}")
        path = folder / "openapi.json"
        path.write_text(json.dumps(answer.json, indent=2) + "\n")
        return path
    finally:
        app.extensions["holdfast"].database.dispose()


def main() -> int:
    redocly = ROOT / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        print("Redocly CLI is missing: run `make assets` (npm ci)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        document = dump(Path(folder))
        return subprocess.run(  # noqa: S603 (our own pinned tool, fixed arguments)
            [str(redocly), "lint", "--config", str(ROOT / "redocly.yaml"), str(document)],
            check=False,
            env={**os.environ, "REDOCLY_TELEMETRY": "off"},
        ).returncode


if __name__ == "__main__":
    raise SystemExit(main())

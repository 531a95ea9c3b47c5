"""The app the speed benchmarks serve: Holdfast exactly as ``wsgi.py`` builds it, plus one
bare route, ``GET /bench/bare``, registered here and never in production code.

The bare route runs through everything the app does for any request (request id, JSON
access log, latency histogram, security headers, the end-of-request hook) but touches no
token and no database: it is the yardstick ``/auth/verify`` is measured against, in the
same app, the same gunicorn, the same run. ``gunicorn bench._wsgi:app``.
"""

from app import create_app

app = create_app()


@app.get("/bench/bare")
def bare() -> str:
    return "ok"

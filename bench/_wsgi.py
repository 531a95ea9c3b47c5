"""The app the speed benchmarks serve: Holdfast exactly as ``wsgi.py`` builds it, plus two
yardstick routes, registered here and never in production code.

Both run through everything the app does for any request (request id, JSON access log,
latency histogram, security headers, the end-of-request hook). ``GET /bench/bare``
touches no token and no database: it is what ``/auth/verify`` is measured against, in the
same app, the same gunicorn, the same run. ``GET /bench/round-trip`` is the bare route
plus one ``SELECT 1`` on the connections the hot path reads on (app.db.PlainConnections):
the least that any session check asking the database on every request must pay, so its
rate over the bare route's is the best verify ÷ bare that such a check can reach on the
machine measured (bench/verify.py). ``gunicorn bench._wsgi:app``.
"""

from app import create_app

app = create_app()


@app.get("/bench/bare")
def bare() -> str:
    return "ok"


@app.get("/bench/round-trip")
def round_trip() -> str:
    app.extensions["holdfast"].database.plain.fetch_one("SELECT 1", ())
    return "ok"

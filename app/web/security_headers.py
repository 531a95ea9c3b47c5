"""The security headers every answer carries (a view may set its own instead), and
``Cache-Control: no-store`` on everything but static files and public data."""

from __future__ import annotations

from flask import Flask, Response, current_app, request

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

#: (name, lower-case name, value) added to every response that does not set its own
SECURITY_HEADERS = tuple(
    (name, name.lower(), value)
    for name, value in (
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    )
)


def init_app(app: Flask) -> None:
    app.after_request(_secure_headers)


def _secure_headers(response: Response) -> Response:
    """Add each of :data:`SECURITY_HEADERS` a view did not set itself (one pass over the
    response's headers, however many there are)."""
    headers = response.headers
    present = {key.lower() for key, _value in headers}
    for name, lowered, value in SECURITY_HEADERS:
        if lowered not in present:
            headers.add(name, value)
    if request.endpoint != "static":
        # Pages carry personal data and CSRF tokens: never cache them anywhere. A view
        # that serves public data says so itself (the JWKS: "public, max-age=…").
        if "cache-control" not in present:
            headers.add("Cache-Control", "no-store")
        elif not response.cache_control.public:
            headers["Cache-Control"] = "no-store"
    if current_app.config["COOKIE_SECURE"] and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", "max-age=31536000")
    return response

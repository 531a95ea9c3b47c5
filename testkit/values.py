"""Fixed values the tests and benchmarks agree on: the secret key of every test app, the
moment the frozen clock starts at, and two real browsers' User-Agent strings."""

from __future__ import annotations

from datetime import UTC, datetime

SECRET = "test-secret-" + "x" * 40
START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
UA_MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
UA_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

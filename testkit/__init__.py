"""What the tests (``tests/``) and the benchmarks (``bench/``) share.

* ``cluster``: real servers on 127.0.0.1 (gunicorn nodes, nginx, redis-server), a small
  HTTP client and a cookie-keeping browser; ``databases``: a throwaway PostgreSQL cluster.
* ``mail``: the SMTP test server's mailbox, waiting for the outbox, running a sender.
* ``sql``: counting the statements a block sends.
* ``rows``: migrating a database, the factory, sessions and events as rows.
* ``web``, ``api``, ``browser``, ``proxy``, ``core``: signing in and acting through the
  pages, the JSON API, Chromium, a reverse proxy, or the core, the real way.
* ``values`` (the secret key, the clock's start, User-Agents) and ``tools``
  (``require_tool``: skip, or fail under ``HOLDFAST_REQUIRE_ALL=1``).

A package of its own, beside ``tests/`` and ``bench/``, so that neither imports the
other and nothing imports a test module or ``conftest.py`` (tests/test_testkit.py checks
it): pytest fixtures stay in ``tests/conftest.py`` and build on what is here. Demo data is
the app's own (``app/demo.py``). Not part of the release: the wheel's package list
(pyproject.toml) names ``app`` only, and the sdist carries it beside the tests
(MANIFEST.in).
"""

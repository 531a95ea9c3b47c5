"""What the tests (``tests/``) and the benchmarks (``bench/``) share: real servers
(gunicorn nodes, nginx, redis-server, a throwaway PostgreSQL cluster), the SMTP test
mailbox, SQL statement counting, demo-free factories and the sign-in helpers that go
through the real flows.

A package of its own, beside ``tests/`` and ``bench/``, so that neither imports the
other and nothing imports a test module or ``conftest.py``: pytest fixtures stay in
``tests/conftest.py`` and use what is here. It is not part of the release: the wheel's
package list (pyproject.toml) names ``app`` only, and the sdist carries it with the
tests (MANIFEST.in).
"""

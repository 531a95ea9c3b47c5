"""Streamed answers (CSV exports) that hold a database connection only while they run.

A streamed body is produced after the view returned and the request's own session was
committed and closed. So the rows come from a session of the stream's own, opened when
the server asks for the first chunk and closed when the last one is sent, or when the
client goes away halfway (the WSGI server then closes the body's iterator, which exits
the ``with`` below): its connection goes back to the pool either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response
from sqlalchemy.orm import Session

from app.db import scope_to_tenant
from app.web.unit_of_work import services


def csv_download(
    rows: Callable[[Session], Iterator[str]], *, tenant_id: str, filename: str
) -> Response:
    """A CSV attachment whose text comes from ``rows(session)``, run on a read session of
    its own scoped to ``tenant_id``."""
    found = services()

    def body() -> Iterator[str]:
        with found.session() as session:
            scope_to_tenant(session, tenant_id)
            yield from rows(session)

    return Response(
        body(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

"""htmx in one place: is this a fragment request, and the Vary header that goes with it."""

from __future__ import annotations

from flask import Response, after_this_request, request


def is_htmx() -> bool:
    """True for an htmx request that wants a fragment (not a boosted full-page load).
    Either way the answer depends on HX-Request, so caches are told to vary on it."""

    @after_this_request
    def _vary(response: Response) -> Response:
        response.vary.add("HX-Request")
        return response

    return bool(request.htmx) and not request.htmx.boosted  # type: ignore[attr-defined]

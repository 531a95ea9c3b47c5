"""What every ``holdfast`` command shares: the app's services, one transaction per command
(committed once at the end, rolled back on any error), and the origin its events carry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from sqlalchemy.orm import Session

from app.core.errors import HoldfastError
from app.core.events import Origin
from app.sealing import Unsealable

#: where the operator's changes come from, in their events
CLI = Origin(ip="", user_agent="holdfast cli")


def services() -> Any:
    return current_app.extensions["holdfast"]


@contextmanager
def transaction() -> Iterator[Session]:
    db = services().session(write=True)
    try:
        yield db
        db.commit()
    except Unsealable as error:  # a stored secret sealed with a key that is gone
        db.rollback()
        raise click.ClickException(str(error)) from error
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def fail(error: HoldfastError) -> None:
    raise click.ClickException(error.message)

"""What the rules need to know about the deployment: its public URL (links in mail), the
product's name, and the MaxMind database addresses are located with (HOLDFAST_GEOIP_DB).
The app makes one :class:`Deployment` at start and hands it to every database session it
opens (app.services.Services.session, with :func:`configure`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app import geo


@dataclass(frozen=True)
class Deployment:
    """What the rules need to know about the deployment."""

    base_url: str = ""
    product: str = "Holdfast"
    locator: geo.Locator | None = None

    def link(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @classmethod
    def from_config(
        cls, *, base_url: str, product: str = "Holdfast", geoip_db: str | None = None
    ) -> Deployment:
        """The public URL (for links in mail), the product name and the MaxMind database
        to locate addresses with (None: no location rules)."""
        return cls(base_url.rstrip("/"), product, geo.locator(geoip_db))


_DEFAULT = Deployment()


def configure(db: Session, deployment: Deployment) -> None:
    """Tell the rules run on ``db`` about the deployment."""
    db.info["deployment"] = deployment


def deployment(db: Session) -> Deployment:
    return db.info.get("deployment") or _DEFAULT


def locate(db: Session, ip: str) -> geo.Place | None:
    locator = deployment(db).locator
    return locator.lookup(ip) if locator is not None and ip else None

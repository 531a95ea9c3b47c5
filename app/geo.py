"""Where an IP address is, from a MaxMind database, when one is configured.

``HOLDFAST_GEOIP_DB`` names a MaxMind City (or Country) database file (``.mmdb``, e.g.
GeoLite2-City), read with MaxMind's ``geoip2`` package. Without it, and for addresses the
database does not know (private and loopback ranges, a bad string), :meth:`Locator.lookup`
answers None and the location rules in app.core.sign_in_rules stay quiet.

A database is opened once per path for the life of the process (memory-mapped, shared by
threads); to load a newer file, restart the app.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Place:
    """A located address. Any part may be missing (a Country database has no city)."""

    #: ISO 3166-1 alpha-2 code, e.g. "GB"
    country: str | None = None
    country_name: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    @property
    def label(self) -> str:
        """What a person reads: "London, United Kingdom", or as much of it as is known."""
        return ", ".join(part for part in (self.city, self.country_name or self.country) if part)

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None


class Locator:
    """Lookups in one MaxMind database file."""

    def __init__(self, path: str | Path) -> None:
        import geoip2.database

        self.path = str(path)
        self._reader = geoip2.database.Reader(self.path)
        self._city = "City" in self._reader.metadata().database_type

    def lookup(self, ip: str) -> Place | None:
        """The place of ``ip``, or None when the database does not know it."""
        import geoip2.errors

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return None
        try:
            found = self._reader.city(ip) if self._city else self._reader.country(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        city = getattr(found, "city", None)
        location = getattr(found, "location", None)
        place = Place(
            country=found.country.iso_code,
            country_name=found.country.name,
            city=city.name if city is not None else None,
            latitude=location.latitude if location is not None else None,
            longitude=location.longitude if location is not None else None,
        )
        return place if place.country or place.has_position else None

    def close(self) -> None:
        self._reader.close()


_open: dict[str, Locator | None] = {}
_lock = threading.Lock()


def locator(path: str | Path | None) -> Locator | None:
    """The shared Locator for ``path``; None when no path is set or the file cannot be
    read (logged once: monitoring without locations beats refusing every sign-in)."""
    if not path:
        return None
    key = str(path)
    with _lock:
        if key not in _open:
            try:
                _open[key] = Locator(key)
            except (OSError, ValueError, RuntimeError, ImportError) as error:
                log.error("HOLDFAST_GEOIP_DB %s cannot be read: %s", key, error)
                _open[key] = None
        return _open[key]


def distance_km(a: Place, b: Place) -> float:
    """Great-circle distance between two located places (haversine)."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        raise ValueError("both places need a position")
    lat1, lon1 = math.radians(a.latitude), math.radians(a.longitude)
    lat2, lon2 = math.radians(b.latitude), math.radians(b.longitude)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))

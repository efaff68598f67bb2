"""Offline reverse geocoding: GPS coordinates -> nearest GeoNames city.

Uses the `reverse_geocode` package, whose city table ships inside the package, so nothing leaves the
machine. The table (~0.5 s to load) is loaded on first use only, and answers are cached per ~10 m cell
because photos from one outing share nearly identical coordinates.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

# 4 decimals of a degree is ~11 m: far finer than the distance between GeoNames cities.
_CACHE_DECIMALS = 4


@dataclass(frozen=True)
class Place:
    """The nearest known city to a coordinate (not an address: the table only holds populated places)."""

    city: str | None
    region: str | None
    country_code: str | None
    country: str | None

    @property
    def label(self) -> str:
        """Short human label, e.g. "Leuven, Flanders, BE"; the region is dropped when it repeats the city."""
        region = self.region if self.region and self.region != self.city else None
        return ", ".join(part for part in (self.city, region, self.country_code) if part)


def valid_coordinates(lat: float, lon: float) -> bool:
    """Whether (lat, lon) is a real position; exactly (0, 0) is the usual "no GPS fix" placeholder."""
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return False
    if math.isnan(lat) or math.isnan(lon) or abs(lat) > 90 or abs(lon) > 180:
        return False
    return not (lat == 0 and lon == 0)


def place_for(lat: float, lon: float) -> Place | None:
    """Nearest city for a coordinate, or None for invalid coordinates or when the table cannot be loaded."""
    if not valid_coordinates(lat, lon):
        return None
    return _lookup(round(float(lat), _CACHE_DECIMALS), round(float(lon), _CACHE_DECIMALS))


@lru_cache(maxsize=4096)
def _lookup(lat: float, lon: float) -> Place | None:
    try:
        import reverse_geocode  # imported lazily: loading its city table is the slow part

        row = reverse_geocode.get((lat, lon))
    except Exception as error:  # a missing/corrupt table must not fail an ingest; the place just stays empty
        log.warning("reverse geocoding unavailable: %s", error)
        return None
    return Place(
        city=_text(row.get("city")),
        region=_text(row.get("state")),
        country_code=_text(row.get("country_code")),
        country=_text(row.get("country")),
    )


def _text(value: object) -> str | None:
    """Stripped string or None, so that empty columns in the table become None rather than ""."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None

"""Imported once by the forkserver, so every decode worker starts with codecs, EXIF, hashing and the offline
geocoder already loaded (instead of paying ~2 s of imports and table loading per worker)."""

from __future__ import annotations

import imagehash
from PIL import Image

import ingest.extract  # noqa: F401  (the worker's code and its imports)
from ingest.geocode import place_for

place_for(50.88, 4.70)  # load the GeoNames table once
imagehash.phash(Image.new("RGB", (32, 32)))  # first call imports scipy's DCT

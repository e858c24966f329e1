"""The real streams with documented drift, kept in the repository (data/real/, see its README).

Each file is the source's CSV byte for byte, gzipped; a missing file raises, so a test that
needs one fails rather than skips.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TextIO

from tests.conftest import ROOT

REAL = ROOT / "data" / "real"
ELEC2 = REAL / "elec2" / "electricity.csv.gz"
INSECTS = REAL / "insects" / "INSECTS_gradual_balanced_24150.csv.gz"
WEATHER = REAL / "weather_noaa" / "weather.csv.gz"


def open_csv(path: Path) -> TextIO:
    """The decompressed text of one of the files above, ready for ``csv.reader``."""
    return gzip.open(path, "rt", encoding="utf-8", newline="")

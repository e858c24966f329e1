"""The common unit conversions a rescaled feed is snapped to, and the snap itself.

A conversion maps a value in the old unit to the new one: ``new = factor * old + offset``.
The table holds the conversions a data pipeline plausibly applies by mistake:

=========================  ==========================  ====================================
name                       factor (offset)             e.g.
=========================  ==========================  ====================================
``x1e-6`` ... ``x1e6``     powers of ten (but 100)     milli/micro/kilo/mega prefixes
``fraction_to_percent``    100                         a share served as a percentage
``percent_to_fraction``    0.01                        and back (also m -> cm, cm -> m)
``km_to_mi``               0.621371 (1 / 1.609344)     kilometres served as miles
``mi_to_km``               1.609344
``kg_to_lb``               2.20462 (1 / 0.45359237)
``lb_to_kg``               0.45359237
``ft_to_m``                0.3048
``m_to_ft``                3.28084 (1 / 0.3048)
``in_to_cm``               2.54
``cm_to_in``               0.393701 (1 / 2.54)
``ms_to_kmh``              3.6                         m/s served as km/h
``kmh_to_ms``              0.277778 (1 / 3.6)
``min_to_s``, ``s_to_min`` 60 and 1 / 60
``h_to_s``, ``s_to_h``     3,600 and 1 / 3,600
``d_to_s``, ``s_to_d``     86,400 and 1 / 86,400
``kib_to_bytes``           1,024 and 1 / 1,024         binary prefixes
``bytes_to_kib``
``sign_flip``              -1                          a sign convention changed
``c_to_f``                 1.8 (+32)                   affine: Celsius served as Fahrenheit
``f_to_c``                 5 / 9 (-160 / 9)
=========================  ==========================  ====================================

A negative factor is the conversion of its magnitude plus a sign flip
(``sign_flip+km_to_mi``). :func:`snap` picks a conversion only when the estimated factor's
confidence interval holds it (an affine one only when the fit has an offset, and its offset
interval holds the conversion's offset too): a wide interval from few events may hold more
than one (1,000 and 1,024 are 2.4% apart); the one nearest the estimate (in log) wins and
the others are named beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors.arrays import FloatArray


@dataclass(frozen=True)
class Conversion:
    """One common conversion: ``new = factor * old + offset``."""

    name: str
    factor: float
    offset: float = 0.0


def _both(name: str, inverse: str, factor: float) -> tuple[Conversion, Conversion]:
    return Conversion(name, factor), Conversion(inverse, 1.0 / factor)


_POWERS = tuple(Conversion(f"x1e{k:+d}", 10.0**k) for k in range(-6, 7) if k not in (-2, 0, 2))
CONVERSIONS: tuple[Conversion, ...] = (
    *_POWERS,
    *_both("fraction_to_percent", "percent_to_fraction", 100.0),
    *_both("mi_to_km", "km_to_mi", 1.609344),
    *_both("lb_to_kg", "kg_to_lb", 0.45359237),  # the pound is 0.45359237 kg exactly
    *_both("ft_to_m", "m_to_ft", 0.3048),
    *_both("in_to_cm", "cm_to_in", 2.54),
    *_both("ms_to_kmh", "kmh_to_ms", 3.6),
    *_both("min_to_s", "s_to_min", 60.0),
    *_both("h_to_s", "s_to_h", 3_600.0),
    *_both("d_to_s", "s_to_d", 86_400.0),
    *_both("kib_to_bytes", "bytes_to_kib", 1_024.0),
    Conversion("sign_flip", -1.0),
    Conversion("c_to_f", 1.8, 32.0),
    Conversion("f_to_c", 5.0 / 9.0, -160.0 / 9.0),
)
# The magnitudes of the pure-scale conversions (1 for a sign flip): what a factor is
# compared with when its sign is judged apart.
SCALES: FloatArray = np.array(
    sorted({abs(c.factor) for c in CONVERSIONS if c.offset == 0.0}), dtype=np.float64
)


@dataclass(frozen=True)
class Snap:
    """The conversion a factor was snapped to: its ``name``, signed ``factor`` and
    ``offset``, and the ``others`` the interval also held (nearest first)."""

    name: str
    factor: float
    offset: float
    others: tuple[str, ...] = ()


def snap(
    factor: float,
    interval: tuple[float, float],
    offset_interval: tuple[float, float] | None = None,
) -> Snap | None:
    """The common conversion within the factor's confidence ``interval`` (the factor's
    own sign), nearest ``factor`` in log; None when none is. With ``offset_interval``
    (an affine fit) only affine conversions whose offset it holds qualify; without it,
    only pure scales.

    >>> snap(0.64, (0.57, 0.70)).name  # km served as miles, seen on a few hundred events
    'km_to_mi'
    >>> print(snap(0.65, (0.63, 0.67)))  # a tighter interval that misses 0.621371
    None
    >>> s = snap(1010.0, (960.0, 1070.0))  # too wide to tell 1,000 from 1,024
    >>> s.name, s.others
    ('x1e+3', ('kib_to_bytes',))
    >>> snap(-0.98, (-1.05, -0.93)).name, snap(-101.0, (-110.0, -95.0)).name
    ('sign_flip', 'sign_flip+fraction_to_percent')
    >>> snap(1.79, (1.70, 1.85), offset_interval=(30.0, 35.0)).name
    'c_to_f'
    """
    low, high = sorted(interval)
    if not (math.isfinite(factor) and factor != 0.0 and low * high > 0 and factor * low > 0):
        return None
    sign = math.copysign(1.0, factor)
    size, low, high = abs(factor), abs(low), abs(high)
    low, high = min(low, high), max(low, high)
    candidates = []
    for c in CONVERSIONS:
        if c.name == "sign_flip":
            if sign > 0:
                continue
            c = Conversion("sign_flip", 1.0)
        elif c.factor < 0:
            continue
        # (an affine conversion flipped is no common one)
        if (c.offset != 0.0) != (offset_interval is not None) or (c.offset and sign < 0):
            continue
        if offset_interval is not None and not min(offset_interval) <= c.offset <= max(
            offset_interval
        ):
            continue
        if low <= c.factor <= high:
            candidates.append((abs(math.log(size / c.factor)), c))
    if not candidates:
        return None
    candidates.sort(key=lambda pair: pair[0])
    names = [_signed(c.name, sign) for _, c in candidates]
    best = candidates[0][1]
    return Snap(names[0], sign * best.factor, best.offset, tuple(names[1:]))


def _signed(name: str, sign: float) -> str:
    if sign > 0 or name == "sign_flip":
        return name
    return f"sign_flip+{name}"

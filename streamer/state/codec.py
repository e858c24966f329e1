"""An object graph as a tree of typed records, and back, without running code.

Every value becomes msgpack's own (None, bool, int, float with inf and nan, str,
bytes) or a record: a list whose first item says what it is, the rest its content.

    ["obj", id, "detectors.monitor.monitor.ModelMonitor", {field: value}]
    ["cfg", id, "streamer.config.LimitsConfig", {field: value}]   (pydantic settings)
    ["nd", id, "<f8", [shape], raw little-endian bytes]           (numeric/bool only)
    ["np", "<f8", raw bytes]                                      (a numpy scalar)
    ["list", id, [items]]   ["tuple", id, [items]]   ["set" | "frozenset", id, [items]]
    ["dict", id, {str: value}]   ["pairs", id, [key, value, key, value, ...]]
    ["counter" | "odict", id, [key, value, ...]]   ["deque", id, maxlen, [items]]
    ["adwin", id, {field: value}]       (river's ADWIN window, see river_adwin)
    ["ref", id]                         (an object already written: shared, or a cycle)
    ["bigint", "123..."]                (an int beyond 64 bits)

Objects are written as their fields (``__dict__`` and ``__slots__``, dataclasses frozen
or not alike), so a new attribute needs no code here. A class is written and read only
if the registry (:mod:`streamer.state.registry`) allows its name; objects are made with
``object.__new__`` and their fields set without running any of their code. The same
object reached twice is one object again after reading (``ModelMonitor.features`` is
the reference's dict, for one), cycles included.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import numpy as np
import pydantic
from river._river_rust.drift import AdaptiveWindowing

from streamer.state import river_adwin

Registry = Mapping[str, type]
_T = TypeVar("_T")

# Numeric and bool dtypes only: an object array would need pickle, a string one has no
# place in a detector's state.
_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
    )
)
_SCALARS = (type(None), bool, int, float, str, bytes)
_INT64 = (-(2**63), 2**64 - 1)
_PLAIN = frozenset(_SCALARS)


def _plain(values: Any, read: bool = False) -> bool:
    """True when every value is msgpack's own, as it stands (no record inside): the
    common case of a big column of ids or floats, written and read in one go. (Ints
    msgpack read are in its range; written ones are checked.)"""
    kinds = set(map(type, values))
    if not kinds <= _PLAIN:
        return False
    if read or int not in kinds:
        return True
    if kinds == {int}:
        return bool(_INT64[0] <= min(values) and max(values) <= _INT64[1])
    return all(_INT64[0] <= v <= _INT64[1] for v in values if type(v) is int)


def not_a_checkpoint(detail: str) -> ValueError:
    return ValueError(f"not a driftgate checkpoint: {detail}")


def type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return names


def _sorted(items: Any) -> list[Any]:
    """A set's items in a stable order when they have one: the same state, the same bytes."""
    values: list[Any] = list(items)
    try:
        return sorted(values)
    except TypeError:
        return values


class Encoder:
    """Writes one object graph as records. With ``missing`` set, a class the registry
    does not allow is added to it (and written as None) instead of raising TypeError."""

    def __init__(self, registry: Registry, missing: set[str] | None = None) -> None:
        self._registry = registry
        self._missing = missing
        # id(obj) -> (record id, obj): obj kept alive so that its id is not reused.
        self._memo: dict[int, tuple[int, object]] = {}

    def encode(self, obj: object) -> Any:
        kind = type(obj)
        if kind in _SCALARS:
            if kind is int and not _INT64[0] <= obj <= _INT64[1]:  # type: ignore[operator]
                return ["bigint", str(obj)]
            return obj
        if isinstance(obj, np.generic):  # a value: its identity does not matter
            array = self._array(np.asarray(obj), -1)
            return ["np", array[2], array[4]]
        seen = self._memo.get(id(obj))
        if seen is not None:
            return ["ref", seen[0]]
        ref = len(self._memo)
        self._memo[id(obj)] = (ref, obj)
        return self._record(obj, kind, ref)

    def _items(self, values: Any) -> Any:
        if _plain(values):
            return values if type(values) is list else list(values)
        return [self.encode(v) for v in values]

    def _pairs(self, mapping: Mapping[Any, Any]) -> list[Any]:
        out = []
        for key, value in mapping.items():
            out.append(self.encode(key))
            out.append(self.encode(value))
        return out

    def _record(self, obj: Any, kind: type, ref: int) -> Any:
        if kind is list:
            return ["list", ref, self._items(obj)]
        if kind is dict:
            if set(map(type, obj)) <= {str}:
                if _plain(obj.values()):
                    return ["dict", ref, obj]
                return ["dict", ref, {k: self.encode(v) for k, v in obj.items()}]
            return ["pairs", ref, self._pairs(obj)]
        if kind is tuple:
            return ["tuple", ref, self._items(obj)]
        if kind is set or kind is frozenset:
            return [kind.__name__, ref, self._items(_sorted(obj))]
        if kind is np.ndarray:
            return self._array(obj, ref)
        if kind is Counter:
            return ["counter", ref, self._pairs(obj)]
        if kind is OrderedDict:
            return ["odict", ref, self._pairs(obj)]
        if kind is deque:
            return ["deque", ref, obj.maxlen, self._items(obj)]
        if kind is AdaptiveWindowing:
            return ["adwin", ref, river_adwin.fields_of(obj)]
        name = type_name(kind)
        if self._registry.get(name) is not kind:
            if self._missing is None:
                raise TypeError(f"{name} is not registered in streamer.state.registry")
            self._missing.add(name)
            return None
        if isinstance(obj, pydantic.BaseModel):
            return ["cfg", ref, name, {k: self.encode(v) for k, v in obj.model_dump().items()}]
        fields = dict(getattr(obj, "__dict__", {}))
        for slot in _slots(kind):
            if hasattr(obj, slot):
                fields[slot] = getattr(obj, slot)
        return ["obj", ref, name, {k: self.encode(v) for k, v in fields.items()}]

    def _array(self, array: np.ndarray, ref: int) -> list[Any]:
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in _DTYPES:
            name = "object arrays" if dtype.hasobject else f"{dtype} arrays"
            raise TypeError(f"{name} are not part of a checkpoint's state")
        data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
        return ["nd", ref, dtype.newbyteorder("<").str, list(array.shape), data]


class Decoder:
    """Builds the objects of a record tree; any record that is not as written raises
    :func:`not_a_checkpoint`."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._built: dict[int, object] = {}
        self._readers: dict[str, Callable[[list[Any]], object]] = {
            "list": self._list,
            "tuple": self._tuple,
            "set": self._set,
            "frozenset": self._set,
            "dict": self._dict,
            "pairs": self._mapping,
            "counter": self._mapping,
            "odict": self._mapping,
            "deque": self._deque,
            "nd": self._array,
            "adwin": self._adwin,
            "obj": self._object,
            "cfg": self._settings,
        }

    def decode(self, value: Any) -> Any:
        if type(value) in _SCALARS:
            return value
        if type(value) is not list or not value or type(value[0]) is not str:
            raise not_a_checkpoint(f"a value of type {type(value).__name__} is no record")
        tag = value[0]
        if tag == "ref":
            return self._ref(value)
        if tag == "bigint":
            return self._bigint(value)
        if tag == "np":
            return self._scalar(value)
        reader = self._readers.get(tag)
        if reader is None:
            raise not_a_checkpoint(f"unknown record {tag!r}")
        if len(value) < 3 or type(value[1]) is not int or value[1] in self._built:
            raise not_a_checkpoint(f"a {tag} record without a fresh id")
        return reader(value)

    def _keep(self, ref: int, obj: _T) -> _T:
        self._built[ref] = obj
        return obj

    def _ref(self, value: list[Any]) -> object:
        if len(value) != 2 or type(value[1]) is not int or value[1] not in self._built:
            raise not_a_checkpoint("a reference to no object read before it")
        return self._built[value[1]]

    def _bigint(self, value: list[Any]) -> int:
        if len(value) != 2 or type(value[1]) is not str or not value[1].lstrip("-").isdigit():
            raise not_a_checkpoint("a malformed big integer")
        if len(value[1]) > 200:
            raise not_a_checkpoint("an integer of more than 200 digits")
        return int(value[1])

    def _content(self, value: list[Any], size: int, kind: type) -> Any:
        if len(value) != size or type(value[-1]) is not kind:
            raise not_a_checkpoint(f"a malformed {value[0]} record")
        return value[-1]

    def _list(self, value: list[Any]) -> list[Any]:
        items = self._content(value, 3, list)
        out: list[Any] = self._keep(value[1], [])
        out.extend(items if _plain(items, read=True) else map(self.decode, items))
        return out

    def _tuple(self, value: list[Any]) -> tuple[Any, ...]:
        # Built after its items: a tuple cannot be in a cycle through itself.
        items = self._content(value, 3, list)
        values = items if _plain(items, read=True) else map(self.decode, items)
        return self._keep(value[1], tuple(values))

    def _set(self, value: list[Any]) -> set[Any] | frozenset[Any]:
        items = [self.decode(v) for v in self._content(value, 3, list)]
        try:
            out = set(items) if value[0] == "set" else frozenset(items)
        except TypeError as exc:
            raise not_a_checkpoint(f"a set of unhashable items ({exc})") from exc
        return self._keep(value[1], out)

    def _dict(self, value: list[Any]) -> dict[str, Any]:
        items = self._content(value, 3, dict)
        out: dict[str, Any] = self._keep(value[1], {})
        if set(map(type, items)) <= {str} and _plain(items.values(), read=True):
            out.update(items)
            return out
        for key, item in items.items():
            if type(key) is not str:
                raise not_a_checkpoint("a dict record with a key that is not a string")
            out[key] = self.decode(item)
        return out

    def _mapping(self, value: list[Any]) -> dict[Any, Any]:
        pairs = self._content(value, 3, list)
        kinds = {"pairs": dict, "counter": Counter, "odict": OrderedDict}
        out: dict[Any, Any] = self._keep(value[1], kinds[value[0]]())
        if len(pairs) % 2:
            raise not_a_checkpoint(f"a {value[0]} record with an odd number of items")
        for i in range(0, len(pairs), 2):
            key = self.decode(pairs[i])
            try:
                out[key] = self.decode(pairs[i + 1])
            except TypeError as exc:
                raise not_a_checkpoint(f"an unhashable key ({exc})") from exc
        return out

    def _deque(self, value: list[Any]) -> deque[Any]:
        items = self._content(value, 4, list)
        maxlen = value[2]
        if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
            raise not_a_checkpoint("a deque record with a malformed maxlen")
        out: deque[Any] = self._keep(value[1], deque(maxlen=maxlen))
        out.extend(items if _plain(items, read=True) else map(self.decode, items))
        return out

    def _array(self, value: list[Any]) -> np.ndarray:
        if len(value) != 5:
            raise not_a_checkpoint("a malformed nd record")
        _, ref, dtype, shape, data = value
        array = _array_of(dtype, data, shape)
        return self._keep(ref, array)

    def _scalar(self, value: list[Any]) -> np.generic:
        if len(value) != 3:
            raise not_a_checkpoint("a malformed np record")
        return cast(np.generic, _array_of(value[1], value[2], [])[()])

    def _adwin(self, value: list[Any]) -> AdaptiveWindowing:
        try:
            window = river_adwin.window_from(self._content(value, 3, dict))
        except ValueError as exc:
            raise not_a_checkpoint(str(exc)) from exc
        return self._keep(value[1], window)

    def _class(self, value: list[Any]) -> tuple[type, dict[str, Any]]:
        if len(value) != 4 or type(value[2]) is not str or type(value[3]) is not dict:
            raise not_a_checkpoint(f"a malformed {value[0]} record")
        cls = self._registry.get(value[2])
        if cls is None:
            raise not_a_checkpoint(f"type {value[2]!r} is not one driftgate's state holds")
        return cls, value[3]

    def _settings(self, value: list[Any]) -> pydantic.BaseModel:
        cls, fields = self._class(value)
        if not issubclass(cls, pydantic.BaseModel):
            raise not_a_checkpoint(f"{value[2]} is not a settings class")
        try:
            settings = cls.model_validate(self._fields(value[2], fields))
        except pydantic.ValidationError as exc:
            raise not_a_checkpoint(f"invalid {value[2]}: {exc}") from exc
        return self._keep(value[1], settings)

    def _fields(self, name: str, fields: dict[Any, Any]) -> dict[str, Any]:
        out = {}
        for key, item in fields.items():
            out[_field_name(name, key)] = self.decode(item)
        return out

    def _object(self, value: list[Any]) -> object:
        cls, fields = self._class(value)
        if issubclass(cls, pydantic.BaseModel) or cls.__new__ is not object.__new__:
            raise not_a_checkpoint(f"{value[2]} is not built from its fields")
        if dataclasses.is_dataclass(cls):
            lacking = {f.name for f in dataclasses.fields(cls)} - set(fields)
            if lacking:
                raise not_a_checkpoint(f"{value[2]} lacks {', '.join(sorted(lacking))}")
        slots = set(_slots(cls))
        has_dict = any("__slots__" not in k.__dict__ for k in cls.__mro__ if k is not object)
        obj = self._keep(value[1], object.__new__(cls))
        for name, item in fields.items():
            _field_name(value[2], name)
            if name in slots:
                object.__setattr__(obj, name, self.decode(item))
            elif has_dict:
                # Straight into __dict__: no property or __setattr__ of the class runs.
                obj.__dict__[sys.intern(name)] = self.decode(item)
            else:
                raise not_a_checkpoint(f"{value[2]} has no field {name!r}")
        return obj


def _field_name(owner: str, name: object) -> str:
    # Not a dunder: __class__ or __dict__ set from a checkpoint would be no field.
    if type(name) is not str or not name.isidentifier() or name.startswith("__"):
        raise not_a_checkpoint(f"a field of {owner} named {name!r}")
    return name


def _array_of(dtype: object, data: object, shape: object) -> np.ndarray:
    if type(dtype) is not str or dtype not in _DTYPES:
        raise not_a_checkpoint(f"an array of dtype {dtype!r}")
    if (
        type(shape) is not list
        or len(shape) > 32
        or any(type(n) is not int or n < 0 for n in shape)
    ):
        raise not_a_checkpoint("an array of a malformed shape")
    if type(data) is not bytes:
        raise not_a_checkpoint("an array without its bytes")
    kind = np.dtype(dtype)
    if len(data) != math.prod(shape) * kind.itemsize:
        raise not_a_checkpoint(f"an array of shape {shape} with {len(data)} bytes")
    # Copied: frombuffer's array would be read-only and keep the whole payload alive.
    array = np.frombuffer(data, dtype=kind).reshape(shape).copy()
    return array.astype(kind.newbyteorder("="), copy=False)

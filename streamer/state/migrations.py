"""From each earlier version of the state format to the next, on the record tree.

A migration runs on the records as read (before any object is built), so it can add a
field with its default, rename one, or reshape a record, without the classes of the
version that wrote them. ``MIGRATIONS[n]`` turns version n into n + 1;
:data:`STATE_VERSION` is the version written now.

    def migrate_2_to_3(tree):
        for fields in records_of(tree, "detectors.monitor.monitor.ModelMonitor"):
            fields.setdefault("incidents", ["list", new_id(tree), []])
        return tree

    MIGRATIONS = {1: migrate_1_to_2, 2: migrate_2_to_3}; STATE_VERSION = 3

A change to a class whose state is checkpointed (a new attribute, a renamed one) needs
one, and tests/fixtures/checkpoint-v1.ckpt, restored by tests/unit/test_state_fixture.py,
says when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from streamer.state.codec import not_a_checkpoint

STATE_VERSION = 6

Migration = Callable[[Any], Any]


def migrate_1_to_2(tree: Any) -> Any:
    """Weekdays and weekends told apart (detectors.seasonal): hourly references and a
    window's events per hour become per slot, 24 hours of weekdays then 24 of weekends.
    A reference of format 1 did not tell them apart: its hours serve both day types, as
    they did, and the window's hours count as weekdays' (alike, then); the monitor of a
    format-1 checkpoint samples no first week."""
    for fields in records_of(tree, "detectors.monitor.monitor.ModelMonitor"):
        fields.setdefault("_first_week", None)
    for fields in records_of(tree, "detectors.monitor.windows.ScopeWindows"):
        _reshape(fields, "hour_events", lambda a: np.concatenate([a, np.zeros_like(a)], axis=1))
    for fields in records_of(tree, "detectors.monitor.feature_drift.FeatureDrift"):
        _reshape(fields, "reference_hourly", lambda a: np.concatenate([a, a]))
    return tree


def migrate_2_to_3(tree: Any) -> Any:
    """A source's clock remembers the time of its last event when that was rejected as
    far ahead, for the next to confirm (streamer.source_clock): none was, in format 2."""
    for fields in records_of(tree, "streamer.source_clock.SourceClocks"):
        fields.setdefault("_ahead", ["pairs", new_id(tree), []])
    return tree


def migrate_3_to_4(tree: Any) -> Any:
    """The first week remembers the features reported since it began, which keep their
    reference (detectors.monitor.first_week): none is known before. The first day knows
    the scopes whose windows are too long for its test of speed (``blind``) and those
    that moved away from the reference (``_moved``, detectors.monitor.first_day): a first
    day begun before keeps the test of speed on all."""
    for fields in records_of(tree, "detectors.monitor.first_week.FirstWeek"):
        fields.setdefault("reported", ["set", new_id(tree), []])
    for fields in records_of(tree, "detectors.monitor.first_day.FirstDay"):
        sample = fields.get("sample")
        if type(sample) is not list or len(sample) != 4 or type(sample[3]) is not dict:
            raise not_a_checkpoint("a first day without its sample")
        n_scopes = sample[3].get("n_scopes")
        if type(n_scopes) is not int or n_scopes < 1:
            raise not_a_checkpoint("a first day's sample without its scopes")
        fields.setdefault("blind", ["nd", new_id(tree), "|b1", [n_scopes], bytes(n_scopes)])
        # Which scopes moved away from the reference: none known (nor asked, not blind).
        fields.setdefault("_moved", _per_feature_and_scope(tree, fields, False))
    return tree


def _per_feature_and_scope(tree: Any, first_day: dict[str, Any], value: object) -> list[Any]:
    """A new dict record of one array per feature, shaped as the first day's
    ``_deferred`` arrays (one slot per scope), every slot ``value``."""
    deferred = first_day.get("_deferred")
    if type(deferred) is not list or len(deferred) != 3 or type(deferred[2]) is not dict:
        raise not_a_checkpoint("a first day without its deferred streaks")
    first = new_id(tree)
    arrays = {}
    for i, (name, record) in enumerate(deferred[2].items()):
        if type(record) is not list or len(record) != 5 or type(record[3]) is not list:
            raise not_a_checkpoint("a first day's deferred streaks without their scopes")
        array = np.full(record[3], value)
        arrays[name] = ["nd", first + 1 + i, array.dtype.str, list(array.shape), array.tobytes()]
    return ["dict", first, arrays]


def _reshape(fields: dict[str, Any], name: str, change: Callable[[Any], Any]) -> None:
    """Apply ``change`` to the array record of field ``name``, if it holds one."""
    record = fields.get(name)
    if type(record) is not list or len(record) != 5 or record[0] != "nd":
        return
    _, ref, dtype, shape, data = record
    if type(data) is not bytes or type(shape) is not list:
        raise not_a_checkpoint(f"a malformed nd record for {name}")
    array = change(np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape))
    fields[name] = ["nd", ref, dtype, list(array.shape), array.astype(dtype).tobytes()]


def migrate_4_to_5(tree: Any) -> Any:
    """A feature compared by the hour knows the slots its first day sampled while its
    drift was deferred (``suspect_slots``, detectors.monitor.feature_drift), and whether
    a drift reported since says they hold a change: none known before, so every window
    goes on being judged as it was. The first day remembers when each scope's first
    deferred streak began (``_first_deferred``): none known, so no slot is suspect."""
    for fields in records_of(tree, "detectors.monitor.feature_drift.FeatureDrift"):
        fields.setdefault("suspect_slots", None)
        fields.setdefault("suspect_confirmed", False)
    for fields in records_of(tree, "detectors.monitor.first_day.FirstDay"):
        # When each scope's first deferred streak began: not known, so none is.
        fields.setdefault("_first_deferred", _per_feature_and_scope(tree, fields, np.nan))
    return tree


def migrate_5_to_6(tree: Any) -> Any:
    """ADWIN per scope keeps river's compiled window itself (``_windows``, with
    ``_fired``: whether its last value fired), not river's ``drift.ADWIN`` object around
    it (detectors.score_change): the same window records, unwrapped."""
    for fields in records_of(tree, "detectors.score_change.ScopedADWIN"):
        detectors = fields.pop("_detectors", None)
        if type(detectors) is not list or len(detectors) != 3 or type(detectors[2]) is not list:
            raise not_a_checkpoint("an ADWIN per scope without its detectors")
        windows, fired = [], []
        for record in detectors[2]:
            if type(record) is not list or len(record) != 4 or type(record[3]) is not dict:
                raise not_a_checkpoint("an ADWIN that is not river's object")
            window, detected = record[3].get("_helper"), record[3].get("_drift_detected")
            if type(window) is not list or not window or window[0] != "adwin":
                raise not_a_checkpoint("an ADWIN without its window")
            if type(detected) is not bool:
                raise not_a_checkpoint("an ADWIN without its detection flag")
            windows.append(window)
            fired.append(detected)
        fields["_windows"] = ["list", detectors[1], windows]
        fields["_fired"] = ["list", new_id(tree), fired]
    return tree


MIGRATIONS: dict[int, Migration] = {
    1: migrate_1_to_2,
    2: migrate_2_to_3,
    3: migrate_3_to_4,
    4: migrate_4_to_5,
    5: migrate_5_to_6,
}


def migrate(
    tree: Any,
    version: object,
    migrations: Mapping[int, Migration] = MIGRATIONS,
    current: int = STATE_VERSION,
) -> Any:
    """The record tree of state format ``version`` brought to ``current``."""
    if not isinstance(version, int) or isinstance(version, bool) or version > current:
        raise not_a_checkpoint(
            f"state format {version!r}; this driftgate reads up to {current} "
            "(written by a newer driftgate?)"
        )
    for step in range(version, current):
        if step not in migrations:
            raise not_a_checkpoint(f"no migration from state format {step} to {step + 1}")
        tree = migrations[step](tree)
    return tree


def records_of(tree: Any, name: str) -> Iterator[dict[str, Any]]:
    """The fields of every object record of type ``name`` in the tree (to change them)."""
    stack = [tree]
    while stack:
        value = stack.pop()
        if type(value) is list:
            if len(value) == 4 and value[0] in ("obj", "cfg") and value[2] == name:
                yield value[3]
            stack.extend(value)
        elif type(value) is dict:
            stack.extend(value.values())


def new_id(tree: Any) -> int:
    """An id no record of the tree has, for a record a migration adds."""
    highest = -1
    stack = [tree]
    while stack:
        value = stack.pop()
        if type(value) is list:
            if len(value) >= 3 and type(value[0]) is str and type(value[1]) is int:
                highest = max(highest, value[1])
            stack.extend(value)
        elif type(value) is dict:
            stack.extend(value.values())
    return highest + 1

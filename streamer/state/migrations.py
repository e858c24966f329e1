"""From each earlier version of the state format to the next, on the record tree.

A migration runs on the records as read (before any object is built), so it can add a
field with its default, rename one, or reshape a record, without the classes of the
version that wrote them. ``MIGRATIONS[n]`` turns version n into n + 1;
:data:`STATE_VERSION` is the version written now.

    def migrate_1_to_2(tree):
        for fields in records_of(tree, "detectors.monitor.monitor.ModelMonitor"):
            fields.setdefault("incidents", ["list", new_id(tree), []])
        return tree

    MIGRATIONS = {1: migrate_1_to_2}; STATE_VERSION = 2

A change to a class whose state is checkpointed (a new attribute, a renamed one) needs
one, and tests/fixtures/checkpoint-v1.ckpt, restored by tests/unit/test_state_fixture.py,
says when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from streamer.state.codec import not_a_checkpoint

STATE_VERSION = 1

Migration = Callable[[Any], Any]
MIGRATIONS: dict[int, Migration] = {}


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

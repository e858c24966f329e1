"""The classes a checkpoint may name: the allow-list the decoder builds objects from.

Every class defined in ``detectors`` (all of its modules: pure state and algorithms) and
in the streamer modules that hold the engine's state (river's compiled ADWIN window is
written as its fields, see :mod:`streamer.state.river_adwin`). Nothing is imported by a
name read from a checkpoint: a name that is not a key here is refused.

A new class in ``detectors`` is allowed without a change here; state kept in a new
streamer module needs that module in ``STATE_MODULES``.
tests/unit/test_state_codec.py walks a real engine and lists any class it reaches that
is not allowed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

from pydantic_settings import BaseSettings

import detectors
from streamer.state.codec import type_name

# The streamer modules whose classes are part of the engine's state.
STATE_MODULES = (
    "streamer.config",
    "streamer.engine",
    "streamer.event_order",
    "streamer.source_clock",
)


def _modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(detectors.__path__, prefix="detectors.")]
    return [importlib.import_module(name) for name in ["detectors", *names, *STATE_MODULES]]


def _classes(module: ModuleType) -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
        and not getattr(cls, "_is_protocol", False)
        # Settings read the environment when validated: the state holds their parts.
        and not issubclass(cls, BaseSettings)
    ]


def _registry() -> dict[str, type]:
    classes = [cls for module in _modules() for cls in _classes(module)]
    return {type_name(cls): cls for cls in classes}


REGISTRY: dict[str, type] = _registry()

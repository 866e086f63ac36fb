"""A module imported on first attribute access.

`import hbflow` and a run whose programs all come from the store (`_programs`) need no
diffrax: it is imported only to trace a solve, to build the default solver there, or to check a
solver the user passed.  The modules that use it write ``diffrax = lazy_module("diffrax")``
(type checkers see the real import), and annotations such as ``diffrax.AbstractSolver`` resolve
when a runtime type checker reads them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    """Stands for a module; imports it when one of its attributes is first asked for."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:  # only reached for names not set in __init__
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str) -> Any:
    """`name`, imported when one of its attributes is first used."""
    return _LazyModule(name)

"""Subpackages that are also the public function of the same name.

``lkmseg.train``, ``lkmseg.export`` and ``lkmseg.bench`` are packages (``lkmseg/train/``...)
and the API's functions (``lkmseg.train("1x5")``). Python binds a subpackage onto its parent
when it is first imported, which would replace a plain function of that name; so the package
module itself is made callable: calling it calls ``lkmseg.api.<name>``, and
``lkmseg.train.loop`` still works.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def _function(self) -> Any:
        return getattr(importlib.import_module("lkmseg.api"), self.__name__.rsplit(".", 1)[1])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._function())


def callable_package(name: str) -> None:
    """Make the (already imported) package ``name`` call ``lkmseg.api.<its last part>``."""
    sys.modules[name].__class__ = _CallableModule

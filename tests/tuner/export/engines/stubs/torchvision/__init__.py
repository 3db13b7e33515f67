"""Import-only stand-in for torchvision, for the SGLang parser check.

PyPI ships only CUDA builds of torchvision, which cannot load beside the CPU torch; SGLang's
server-argument resolution imports multimodal helpers that do ``import torchvision...`` at
module level and never call them for a text model. Every attribute and submodule here is an
inert object; calling one raises, so any real use would be loud.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

__version__ = "0.0.0+spectune-stand-in"


class _Inert:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, item: str) -> _Inert:
        return _Inert(f"{self._name}.{item}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self._name}: torchvision is a stand-in in spectune's tests")

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


class _Module(types.ModuleType):
    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        return _Inert(f"{self.__name__}.{item}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


sys.meta_path.insert(0, _Finder())


def __getattr__(item: str) -> Any:
    if item.startswith("__"):
        raise AttributeError(item)
    return _Inert(f"torchvision.{item}")

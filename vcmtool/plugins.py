"""Import every module of a package so its ``@REGISTRY.register`` decorators run.

This is what makes a new encoder, QP-map source or command "one file": dropping the module
into its package is the registration; no list elsewhere needs an edit.
"""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str, skip: tuple[str, ...] = ()) -> None:
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")

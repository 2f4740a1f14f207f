"""Method packages re-export the public names (``__all__``) of all their
submodules, so a new method is one new module: no central list to edit."""
from __future__ import annotations

import importlib
import pkgutil


def export_submodules(package_name: str, package_path, namespace: dict) -> list[str]:
    names: list[str] = []
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package_name}.{info.name}")
        for attr in getattr(mod, "__all__", ()):
            namespace[attr] = getattr(mod, attr)
            names.append(attr)
    return names

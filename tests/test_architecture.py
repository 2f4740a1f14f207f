"""The import contract of docs/ARCHITECTURE.md, checked on the source (every
import statement, at module level or inside a function):

* a package imports only packages of its own layer or below;
* no module imports another module's private name (``from x import _y``);
* no central list of method packages: families are found by convention.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "torchslim"

# bottom to top; packages in one tuple form one layer and may import each other
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("runtime",),
    ("zoo", "artifact", "graph"),
    ("analysis",),
    ("train",),
    ("prune", "quantize", "distill", "decompose", "nas"),
    ("codec", "export"),
    ("report",),
    ("recipe", "auto"),
    ("cli", "__main__", "testing"),
]
LEVEL = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _imports():
    """(file, line, importing module, imported module, names) for every
    import of a torchslim module, resolved to absolute names."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mod = ".".join(parts)
        pkg = parts if is_pkg else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[:len(pkg) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("torchslim"):
                    out.append((path, node.lineno, mod, target, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("torchslim"):
                        out.append((path, node.lineno, mod, a.name, []))
    return out


IMPORTS = _imports()


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_layer():
    pkgs = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    pkgs |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert pkgs <= set(LEVEL), f"add {sorted(pkgs - set(LEVEL))} to LAYERS (and to docs/ARCHITECTURE.md)"


def test_packages_import_only_their_layer_or_below():
    bad = []
    for path, line, mod, target, names in IMPORTS:
        src, dst = _package(mod), _package(target)
        if src is None or dst is None or src == dst:
            continue
        if target == "torchslim" and names:  # `from torchslim import prune`: the named subpackages count
            dsts = [n for n in names if n in LEVEL]
        else:
            dsts = [dst]
        for d in dsts:
            if LEVEL[d] > LEVEL[src]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} (layer {LEVEL[src]}) imports "
                           f"{d} (layer {LEVEL[d]})")
    assert not bad, "layering violations:\n" + "\n".join(bad)


@pytest.mark.parametrize("low,high", [("report", "cli"), ("analysis", "export"), ("graph", "prune"),
                                      ("core", "prune"), ("artifact", "quantize"), ("train", "recipe")])
def test_named_contracts(low, high):
    hits = [f"{p.name}:{ln}" for p, ln, mod, target, _ in IMPORTS
            if _package(mod) == low and _package(target) == high]
    assert not hits, f"{low} must not import {high}: {hits}"


def test_no_private_cross_module_imports():
    bad = [f"{p.relative_to(ROOT.parent)}:{ln}: from {target} import {n}"
           for p, ln, mod, target, names in IMPORTS for n in names
           if n.startswith("_") and not n.startswith("__") and target != mod]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


def test_no_central_list_of_method_packages():
    from torchslim.core.config import method_packages

    found = set(method_packages())
    assert {"torchslim.prune", "torchslim.quantize", "torchslim.distill", "torchslim.decompose", "torchslim.codec",
            "torchslim.export", "torchslim.train"} <= found
    for f in ("core/config.py", "__init__.py"):
        text = (ROOT / f).read_text()
        assert "METHOD_MODULES" not in text and "_NAMESPACES" not in text
        assert '"torchslim.prune"' not in text and "'torchslim.prune'" not in text


def test_method_families_register_their_stages():
    from torchslim.core.config import registered_configs

    names = set(registered_configs())
    assert {"train", "prune.structured", "prune.unstructured", "quantize.ptq", "quantize.kmeans", "distill",
            "decompose.svd", "codec.encode", "export.onnx"} <= names

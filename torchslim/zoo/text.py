"""An offline English sentence corpus, built from text that is already
installed: the docstrings of a fixed list of Python standard-library modules,
split into sentences. Deterministic for a given Python version, no download.

``source`` picks the text (``SOURCES``): ``"stdlib"`` (the default, a few
thousand sentences: docstrings of ``STDLIB_MODULES`` as imported), ``"pydoc"``
(the Python reference manual text in ``pydoc_data.topics``),
``"stdlib_source"`` (every docstring in the standard library's ``.py`` files,
read with ``ast``, nothing imported), ``"torch"`` (every docstring in the
installed torch package's ``.py`` files; deterministic for a pinned torch) and
``"large"`` (all four, in that order, de-duplicated: about 40k sentences,
~20 s to build once per process). The split of a sentence depends on its text
only, so it is the same whichever source it comes from: ``calib`` of any
source never shares a sentence with ``eval`` of any source.

Use it where a text model needs inputs that are not the test data: calibration
of quantized sentence encoders, distillation of ``minilm`` students, latency
inputs. ``sentences(split="calib")`` and ``sentences(split="eval")`` are
disjoint (a sentence goes to one split by a hash of its text), so settings
chosen on ``calib`` can be measured honestly on ``eval``.

    >>> from torchslim.zoo.text import sentences
    >>> calib = sentences(256, split="calib")
    >>> evaluation = sentences(256, split="eval")
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import re
import sysconfig
from pathlib import Path
from typing import Literal

__all__ = ["sentences", "STDLIB_MODULES", "SOURCES"]

# Modules whose import has no side effect (no `this`, no `antigravity`), in a
# fixed order so the corpus is the same on every run.
STDLIB_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "email.message", "enum", "filecmp", "fnmatch", "fractions", "ftplib", "functools",
    "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client",
    "http.cookies", "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "locale",
    "logging", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "multiprocessing", "numbers",
    "operator", "optparse", "os", "pathlib", "pickle", "pickletools", "pkgutil", "platform", "plistlib",
    "poplib", "pprint", "queue", "random", "re", "reprlib", "sched", "secrets", "selectors", "shelve", "shlex",
    "shutil", "signal", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string",
    "struct", "subprocess", "symtable", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit",
    "tokenize", "trace", "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
    "warnings", "wave", "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zlib",
)

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]+")


def _docstrings(module_name: str):
    try:
        mod = importlib.import_module(module_name)
    except Exception:  # a module missing from this Python build: skip it
        return
    yield inspect.getdoc(mod) or ""
    for name in sorted(getattr(mod, "__all__", None) or dir(mod)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name, None)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            if getattr(obj, "__module__", module_name) != module_name:
                continue
            yield inspect.getdoc(obj) or ""
            if inspect.isclass(obj):
                for mname, member in sorted(vars(obj).items()):
                    if not mname.startswith("_") and callable(member):
                        yield inspect.getdoc(member) or ""


def _paragraph_sentences(doc: str):
    for para in re.split(r"\n\s*\n", doc):
        if ">>>" in para or "::" in para or para.lstrip().startswith(("-", "*", "|")):
            continue
        text = " ".join(line.strip() for line in para.splitlines())
        for s in _SPLIT.split(text):
            yield s.strip()


def _is_prose(s: str, min_words: int, max_words: int) -> bool:
    words = s.split()
    if not (min_words <= len(words) <= max_words) or not s.endswith("."):
        return False
    if not s[0].isupper():
        return False
    letters = sum(len(w) for w in _WORD.findall(s))
    return letters >= 0.75 * len(s.replace(" ", "")) and "(" not in s[:20]


def _stdlib_docs():
    for module_name in STDLIB_MODULES:
        yield from _docstrings(module_name)


def _pydoc_docs():
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})


def _source_docs(root: Path):
    """Every module, class and function docstring in the ``.py`` files under
    ``root`` (sorted paths; test folders skipped), parsed, never imported."""
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS & set(path.relative_to(root).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def _stdlib_source_docs():
    return _source_docs(Path(sysconfig.get_paths()["stdlib"]))


def _torch_docs():
    import torch

    return _source_docs(Path(torch.__file__).parent)


_DOCS = {"stdlib": _stdlib_docs, "pydoc": _pydoc_docs, "stdlib_source": _stdlib_source_docs, "torch": _torch_docs}
SOURCES = (*_DOCS, "large")


@functools.lru_cache(maxsize=8)
def _corpus(min_words: int, max_words: int, source: str = "stdlib") -> tuple[str, ...]:
    if source == "large":
        parts = [_corpus(min_words, max_words, name) for name in _DOCS]
        return tuple(dict.fromkeys(s for part in parts for s in part))
    seen: set[str] = set()
    out: list[str] = []
    for doc in _DOCS[source]():
        for s in _paragraph_sentences(doc):
            if s not in seen and _is_prose(s, min_words, max_words):
                seen.add(s)
                out.append(s)
    return tuple(out)


def _split_of(s: str) -> str:
    return "eval" if hashlib.sha256(s.encode()).digest()[0] % 2 else "calib"


def sentences(n: int | None = None, *, split: Literal["calib", "eval", "all"] = "all", source: str = "stdlib",
              min_words: int = 6, max_words: int = 40) -> list[str]:
    """Up to ``n`` English sentences (all of them if ``n`` is None), in a fixed
    order. ``split`` picks the calibration or the evaluation half (disjoint,
    by a hash of the text, across every source); ``source`` one of
    ``SOURCES`` (see the module doc): about 2k sentences per split for the
    default "stdlib", about 20k per split for "large"."""
    if split not in ("calib", "eval", "all"):
        raise ValueError(f"split must be 'calib', 'eval' or 'all', got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
    pool = [s for s in _corpus(min_words, max_words, source) if split == "all" or _split_of(s) == split]
    return pool if n is None else pool[:n]

"""What the registered model carries so that it loads where leukml is not installed: the leukml
modules its ``predict`` imports (and nothing else), and its pinned pip requirements.

The served pyfunc is pickled as ``leukml.serving.pyfunc.CellClassifier``; a Python that loads it
must import that module and what it imports from leukml. ``code_folder`` copies exactly those
source files, found by reading their ``import`` statements, into a ``leukml`` package of their own,
which MLflow puts first on ``sys.path`` when it loads the model (``code_paths``). Decoding and TTA
stay defined once: the model ships the very files that ``leukml predict`` and training import.
"""

from __future__ import annotations

import ast
import shutil
from importlib import metadata
from pathlib import Path

import leukml

ROOT = Path(leukml.__file__).resolve().parent
ENTRY = "leukml.serving.pyfunc"
# what the shipped modules import beyond the standard library and leukml, as pip names them; the
# Keras backend's own packages come from ``training.runtime.backend_requirements``
PREDICT_PACKAGES = ("mlflow", "numpy", "pandas", "pillow")


def _source(module: str) -> Path:
    """The file of a leukml module: ``pkg/__init__.py`` for a package, else ``pkg/mod.py``."""
    parts = module.split(".")[1:]
    folder = ROOT.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def _exists(module: str) -> bool:
    return _source(module).is_file()


def _leukml_imports(module: str) -> set[str]:
    """The leukml modules ``module`` imports anywhere in its body (functions included): for
    ``from leukml.x import y``, ``leukml.x.y`` when ``y`` is a module, else ``leukml.x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_source(module).read_text(), str(_source(module)))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "leukml"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "leukml":
                continue
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _exists(f"{node.module}.{a.name}")}
    return found


def modules(entry: str = ENTRY) -> list[str]:
    """Every leukml module a Python needs to import ``entry``: its imports' closure, with the
    packages above each module (their ``__init__`` runs first)."""
    todo, seen = [entry], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_leukml_imports(module))
    return sorted(seen)


def code_folder(out: Path, entry: str = ENTRY) -> Path:
    """A ``leukml`` package under ``out`` holding the source of ``modules(entry)`` only; its
    path is what ``log_model(code_paths=[...])`` takes."""
    package = out / "leukml"
    for module in modules(entry):
        source = _source(module)
        target = package / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return package


def pinned(packages: tuple[str, ...] | list[str]) -> list[str]:
    """``name==version`` of each installed package, as MLflow pins what it infers (a local
    version label such as ``+cu121`` dropped: an index does not serve it)."""
    out = []
    for name in packages:
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return out

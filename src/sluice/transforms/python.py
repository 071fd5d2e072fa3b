"""Python transforms: call ``module:function`` from the project folder with the parents as Arrow tables.

``python: transforms.scoring:score`` in a definition imports ``transforms/scoring.py`` (or
``transforms.scoring`` wherever it is importable) and calls ``score(users=..., orders=...)``, one keyword
per parent, named after it; two parents of different stages that share a name are ``<layer>_<name>``
(``raw_customers``, ``cleaned_customers``). The function returns a ``pyarrow.Table`` (a RecordBatchReader,
a RecordBatch, a list of dicts, a pandas DataFrame or anything with ``__arrow_c_stream__`` also works).

>>> def double(users):                      # in <project>/transforms.py
...     return users.append_column("twice", pyarrow.compute.multiply(users["id"], 2))

The code a reference runs is its module plus every *project-local* module that module imports,
directly or transitively (:func:`project_modules`). :func:`input_fingerprint` hashes their contents, so
an edit to any of them makes the object stale, and a worker re-imports them before the next call.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from sluice.errors import TerminalError, did_you_mean

_IMPORT_LOCK = threading.Lock()
_LOADED: dict[str, str] = {}  # project-local module name -> digest of its file's content when last imported


def run_python(ref: str, root: Path, inputs: Mapping[str, pa.Table], *, object_label: str) -> pa.Table:
    """Call the function ``ref`` names with ``inputs`` as keyword arguments and return its result as a Table.

    Problems with the reference, the signature or the result are TerminalErrors naming ``object_label``;
    an exception raised inside the function propagates unchanged (the runtime retries it).
    """
    function = load_function(ref, root, object_label=object_label)
    try:
        inspect.signature(function).bind(**inputs)
    except TypeError as exc:
        parents = ", ".join(inputs) or "none"
        raise TerminalError(
            f"{object_label}: {ref}{_signature(function)} cannot be called with the parents ({parents}): {exc}; "
            "name its parameters after the parents, or take **tables"
        ) from None
    except ValueError:
        pass  # no signature to check (a builtin or C function): just call it
    return as_table(function(**inputs), ref, object_label=object_label)


def load_function(ref: str, root: Path, *, object_label: str) -> Callable[..., Any]:
    """The callable ``module:function`` names, importing the module from the project folder ``root``."""
    module_name, sep, function_name = ref.partition(":")
    if not sep or not module_name or not function_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise TerminalError(
            f"{object_label}: python reference {ref!r} must look like 'module:function' or 'package.module:function'"
        )
    module = _import(module_name, Path(root).resolve(), object_label)
    function = getattr(module, function_name, None)
    if function is None:
        defined = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")]
        raise TerminalError(
            f"{object_label}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no function {function_name!r}."
            f"{did_you_mean(function_name, defined)} It defines: {', '.join(defined) or 'no functions'}"
        )
    if not callable(function):
        raise TerminalError(f"{object_label}: {ref} is a {type(function).__name__}, not a function")
    return function  # type: ignore[no-any-return]


def as_table(result: Any, ref: str, *, object_label: str) -> pa.Table:
    """The function's result as a Table; a TerminalError for anything that is not tabular."""
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatchReader):
        return result.read_all()
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(result, pandas.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False)
    if isinstance(result, list) and all(isinstance(row, dict) for row in result):
        try:
            rows = pa.array(result) if result else pa.array([], pa.struct([]))
            return pa.Table.from_batches([pa.RecordBatch.from_struct_array(rows)])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TerminalError(
                f"{object_label}: {ref} returned rows whose values do not fit one type per column: {exc}"
            ) from exc
    if hasattr(result, "__arrow_c_stream__"):
        return pa.table(result)
    raise TerminalError(
        f"{object_label}: {ref} returned {type(result).__name__}; return a pyarrow.Table "
        "(or a RecordBatchReader, a list of dicts or a pandas DataFrame)"
    )


def _import(module_name: str, root: Path, object_label: str) -> ModuleType:
    top = module_name.split(".")[0]
    with _IMPORT_LOCK:
        if str(root) in sys.path:
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))  # this project's modules win over another project's of the same name
        local = project_modules(module_name, root)
        if (root / f"{top}.py").is_file() or (root / top).is_dir():
            _forget_stale(top, root, local)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (exc.name == module_name or module_name.startswith(exc.name + ".")):
                path = root.joinpath(*module_name.split("."))
                raise TerminalError(
                    f"{object_label}: cannot import module {module_name!r}: no {path}.py or {path}/__init__.py in the project "
                    "folder, and no installed module of that name"
                ) from None
            raise TerminalError(f"{object_label}: importing module {module_name!r} failed: {exc}") from exc
        except SyntaxError as exc:
            where = f"{exc.filename}:{exc.lineno}"
            raise TerminalError(f"{object_label}: {where}: syntax error in module {module_name!r}: {exc.msg}") from exc
        except Exception as exc:
            raise TerminalError(f"{object_label}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
        # Also the modules not imported yet (imported inside the function, at call time): they load what the
        # files hold now, or later content, which the next call's comparison then sees as a change.
        _LOADED.update((name, digest) for name, (_, digest) in local.items())
        return module


def _forget_stale(top: str, root: Path, local: Mapping[str, tuple[Path, str]]) -> None:
    """Drop cached modules another project provided, and every module of ``local`` if one of them changed.

    ``local`` is what :func:`project_modules` found for the module about to be imported. A module
    named ``top`` (or below it) or in ``local`` whose file is outside ``root`` came from another project.
    When any module of ``local`` was imported with other content than its file has now (or was not
    imported by this module, so its content is unknown), all of ``local`` is imported again: a module
    that imports a changed one holds references to the old one's functions.
    """
    names = set(local) | {name for name in sys.modules if name == top or name.startswith(top + ".")}
    for name in sorted(names):
        module = sys.modules.get(name)
        if module is None:
            continue
        file = getattr(module, "__file__", None)
        paths = [file] if file else list(getattr(module, "__path__", []))
        if not any(Path(path).resolve().is_relative_to(root) for path in paths):
            del sys.modules[name]
            _LOADED.pop(name, None)
    if any(name in sys.modules and _LOADED.get(name) != digest for name, (_, digest) in local.items()):
        for name in local:
            sys.modules.pop(name, None)
            _LOADED.pop(name, None)
    importlib.invalidate_caches()


def input_fingerprint(ref: str, root: Path) -> str:
    """A digest of the code ``ref`` (``module:function``) runs: the contents of its project-local modules.

    ``root`` is the project folder (a Path). The modules are those :func:`project_modules` finds: the
    reference's module, the ``__init__.py`` of each package along its dotted name, and every module
    under ``root`` it imports, transitively. Each file's bytes are hashed (BLAKE2b): an edit is
    noticed even when it keeps the file's size and modification time. The digest (32 hex digits)
    also covers each module's name and path relative to ``root``, so a moved or renamed module counts
    as a change. Installed libraries do not count, nor code loaded without an import statement
    (``importlib.import_module``, ``exec``) or data files the function reads. Cost: one read and one
    parse per module file (parses are cached by content), milliseconds for a typical project.
    """
    root = Path(root).resolve()
    digest = hashlib.blake2b(digest_size=16)
    for name, (path, file_digest) in sorted(project_modules(ref.partition(":")[0], root).items()):
        digest.update(f"{name}|{path.relative_to(root).as_posix()}|{file_digest}\n".encode())
    return digest.hexdigest()


def project_modules(module_name: str, root: Path) -> dict[str, tuple[Path, str]]:
    """Every module under ``root`` that importing ``module_name`` from ``root`` runs: name -> (file, content digest).

    A static scan (:mod:`ast`) of the import statements anywhere in each file (module level, inside
    functions, under ``if`` or ``try``), followed transitively. ``import a.b`` and ``from a.b import c``
    count ``a``, ``a.b`` and, if it is a module, ``a.b.c``; relative imports are resolved against the
    importing module's package. A name counts when ``root`` holds its file (``a/b.py`` or
    ``a/b/__init__.py``), as Python finds it with ``root`` first on ``sys.path``; anything else is an
    installed library and is left out. An unreadable file is left out; a file that does not parse
    counts with no imports (importing it fails anyway). The content digest is BLAKE2b, 32 hex digits.
    """
    found: dict[str, tuple[Path, str]] = {}
    pending = [module_name]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or not name or not all(part.isidentifier() for part in name.split(".")):
            continue
        seen.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:end]) for end in range(1, len(parts)))
        path = _module_file(parts, root)
        if path is None:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found[name] = (path, hashlib.blake2b(data, digest_size=16).hexdigest())
        pending.extend(_imports(data, name, path.name == "__init__.py"))
    return found


def _module_file(parts: list[str], root: Path) -> Path | None:
    """The file of the module named by ``parts`` below ``root`` (a package's ``__init__.py``), if any."""
    base = root.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_name(parts[-1] + ".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4096)
def _imports(data: bytes, name: str, is_package: bool) -> tuple[str, ...]:
    """The absolute module names the import statements of ``data`` (the source of module ``name``) may load."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return ()
    package = name if is_package else name.rpartition(".")[0]
    return tuple(_imported_names(tree, package))


def _imported_names(tree: ast.AST, package: str) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                if keep <= 0:
                    continue  # beyond the top-level package: an ImportError when run
                base = ".".join([*parts[:keep], *([base] if base else [])])
            if base:
                yield base
                yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def _signature(function: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(function))
    except ValueError:
        return "(...)"

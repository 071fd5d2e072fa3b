"""Python transforms: call ``module:function`` from the project folder with the parents as Arrow tables.

``python: transforms.scoring:score`` in a definition imports ``transforms/scoring.py`` (or
``transforms.scoring`` wherever it is importable) and calls ``score(users=..., orders=...)``, one keyword
per parent. The function returns a ``pyarrow.Table`` (a RecordBatchReader, a RecordBatch, a list of dicts,
a pandas DataFrame or anything with ``__arrow_c_stream__`` also works).

>>> def double(users):                      # in <project>/transforms.py
...     return users.append_column("twice", pyarrow.compute.multiply(users["id"], 2))
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from sluice.errors import TerminalError, did_you_mean

_IMPORT_LOCK = threading.Lock()
_LOADED: dict[str, int] = {}  # module name -> modification time of its file when imported


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


def input_fingerprint(ref: str, root: Path) -> str:
    """What a run of ``ref`` (``module:function``) reads besides its parents: ``"size:mtime_ns"`` of the module's file
    under the project folder ``root`` (``""`` when there is no such file). Never raises."""
    module = root / (ref.split(":", 1)[0].replace(".", "/") + ".py")
    try:
        stat = module.stat()
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


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
        if (root / f"{top}.py").is_file() or (root / top).is_dir():
            _forget_stale(top, root)
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
        _LOADED.setdefault(module_name, _modified(module))
        return module


def _forget_stale(top: str, root: Path) -> None:
    """Drop cached modules named ``top`` (and below) that another project provided or that were edited since."""
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        module = sys.modules[name]
        file = getattr(module, "__file__", None)
        paths = [file] if file else list(getattr(module, "__path__", []))
        other_project = not any(Path(path).resolve().is_relative_to(root) for path in paths)
        if other_project or _LOADED.get(name, _modified(module)) != _modified(module):
            del sys.modules[name]
            _LOADED.pop(name, None)
    importlib.invalidate_caches()


def _modified(module: ModuleType) -> int:
    """Modification time of a module's file (0 for packages without one)."""
    file = getattr(module, "__file__", None)
    try:
        return Path(file).stat().st_mtime_ns if file else 0
    except OSError:
        return 0


def _signature(function: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(function))
    except ValueError:
        return "(...)"

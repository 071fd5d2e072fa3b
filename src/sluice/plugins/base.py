"""The plugin descriptor: what a plugin is called, what options it takes, and where its code lives.

>>> from sluice.plugins import registry
>>> plugin = registry().get("source", "csv")
>>> plugin.kind, plugin.name, plugin.options.__name__
('source', 'csv', 'CsvOptions')

The descriptor imports nothing heavy: ``target`` (``"package.module:attribute"``) is imported by
:meth:`Plugin.load` on first use, after checking that the driver modules its ``extra`` brings are
installed. The idea follows Python packaging's entry points and the provider packages of Airflow and
dlt: a small declaration that is cheap to list, and an implementation loaded lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from sluice.errors import ConfigError

PluginKind = Literal["source", "destination", "lake", "engine", "bus", "state", "capture", "apply", "api", "check", "alert"]
KINDS: tuple[PluginKind, ...] = (
    "source",
    "destination",
    "lake",
    "engine",
    "bus",
    "state",
    "capture",
    "apply",
    "api",
    "check",
    "alert",
)


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Base of every typed options structure: unknown keys are errors; fields are keyword-only; encoding omits defaults."""


class PluginError(ConfigError):
    """A plugin is unknown, declared twice, or cannot be loaded."""


class MissingExtra(PluginError):
    """A plugin's driver is not installed; the message names the pip extra that brings it."""


@dataclass(frozen=True, slots=True)
class Plugin:
    """One plugin of one kind.

    - ``kind``: which seam (``source``, ``destination``, ``lake``, ``engine``, ``bus``, ``state``...).
    - ``name``: what a project writes to choose it (a source's ``type``, a destination's URL scheme...).
    - ``options``: the typed options structure, checked by ``sluice validate`` before anything runs.
    - ``target``: ``"module:attribute"`` of the implementation (a class or a factory), imported by :meth:`load`.
    - ``schemes``: URL schemes it serves (``postgresql``, ``postgres``), for kinds chosen by URL.
    - ``extra``/``modules``: the pip extra (``sluice[postgres]``) and the driver modules it installs.
    - ``summary``: one line for ``sluice plugins`` and the reference pages.
    - ``package``: the distribution that declares it (``sluice`` for built-ins).
    """

    kind: PluginKind
    name: str
    options: type[Settings]
    target: str
    summary: str
    schemes: tuple[str, ...] = ()
    extra: str | None = None
    modules: tuple[str, ...] = ()
    package: str = "sluice"

    @property
    def label(self) -> str:
        """``source 'csv'``: how messages name the plugin."""
        return f"{self.kind} {self.name!r}"

    def missing_modules(self) -> list[str]:
        """The driver modules of :attr:`modules` that are not installed (nothing is imported)."""
        missing = []
        for module in self.modules:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    def check_installed(self) -> None:
        """Raise :class:`MissingExtra` (one line naming the extra to install) when a driver is missing."""
        missing = self.missing_modules()
        if not missing:
            return
        how = f"pip install 'sluice[{self.extra}]'" if self.extra else f"install {', '.join(missing)}"
        raise MissingExtra(f"the {self.label} plugin needs {', '.join(missing)}, which is not installed: run {how}")

    def load(self) -> Any:
        """The implementation (``target``), imported now. Raises :class:`MissingExtra` or :class:`PluginError`."""
        self.check_installed()
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"the {self.label} plugin ({self.package}) cannot be imported from {self.target!r}: {exc}") from exc
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise PluginError(f"the {self.label} plugin ({self.package}): {module_name} has no {attribute!r}") from None

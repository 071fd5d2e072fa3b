"""A third-party plugin, installed for real with pip, is listed, checked and run through its entry point.

The package is built in tmp_path with a twenty-line in-tree PEP 517 backend (no setuptools or wheel
needed, nothing downloaded), installed with ``pip install --target``, which writes its dist-info with
``entry_points.txt``; the ``sluice`` subprocesses find it on PYTHONPATH like any installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

BACKEND = '''
"""A minimal PEP 517 backend: a wheel of the package folder, with the entry points of pyproject.toml."""
import base64, hashlib, tomllib, zipfile
from pathlib import Path

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    files = {str(p): p.read_bytes() for p in sorted(Path(name).rglob("*.py"))}
    points = "".join(
        f"[{group}]\\n" + "".join(f"{key} = {value}\\n" for key, value in entries.items())
        for group, entries in project.get("entry-points", {}).items()
    )
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{info}/entry_points.txt"] = points.encode()
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in files.items()]
    files[f"{info}/RECORD"] = ("\\n".join([*record, f"{info}/RECORD,,"]) + "\\n").encode()
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
'''

HELLO_PLUGIN = '''
"""sluice-hello: a source that yields greetings."""
from typing import Annotated

from msgspec import Meta

from sluice.plugins import Plugin, Settings


class HelloOptions(Settings):
    """Greetings, one a row."""

    greeting: Annotated[str, Meta(min_length=1, description="What each row says.")]
    rows: Annotated[int, Meta(ge=1, description="How many rows.")] = 3


PLUGINS = [
    Plugin("source", "hello", HelloOptions, "sluice_hello.source:HelloSource", "Greetings, one a row.", package="sluice-hello")
]
'''

HELLO_SOURCE = """
import pyarrow as pa

from sluice.connectors.base import Source
from sluice_hello import HelloOptions


class HelloSource(Source[HelloOptions]):
    def read(self) -> pa.RecordBatchReader:
        numbers = list(range(1, self.options.rows + 1))
        table = pa.table({"n": numbers, "greeting": [f"{self.options.greeting} #{n}" for n in numbers]})
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
"""


def make_package(root: Path, name: str, entry_point: str, files: dict[str, str]) -> Path:
    """A source tree of the distribution ``name`` registering ``entry_point`` in the sluice.plugins group."""
    package = root / name
    module = name.replace("-", "_")
    (package / module).mkdir(parents=True)
    (package / "_backend.py").write_text(BACKEND)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = []
        build-backend = "_backend"
        backend-path = ["."]

        [project]
        name = "{name}"
        version = "0.1.0"

        [project.entry-points."sluice.plugins"]
        {entry_point}
        """)
    )
    for path, text in files.items():
        (package / module / path).write_text(text)
    return package


def install(package: Path, site: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(site), str(package)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def sluice(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)])}
    command = [sys.executable, "-m", "sluice", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hello")
    package = make_package(
        root, "sluice-hello", 'hello = "sluice_hello:PLUGINS"', {"__init__.py": HELLO_PLUGIN, "source.py": HELLO_SOURCE}
    )
    site = root / "site"
    install(package, site)
    points = site / "sluice_hello-0.1.0.dist-info" / "entry_points.txt"
    assert points.read_text() == "[sluice.plugins]\nhello = sluice_hello:PLUGINS\n"
    return site


def write_project(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "sluice.yaml").write_text(f"objects:\n  - id: 1001\n    name: greetings\n    source: {source}\n")
    return folder


def test_installed_plugin_is_listed(hello_site: Path) -> None:
    result = sluice(hello_site, "plugins", "--json", "--kind", "source")
    assert result.returncode == 0, result.stderr
    hello = next(p for p in json.loads(result.stdout) if p["name"] == "hello")
    assert hello["package"] == "sluice-hello" and hello["installed"] is True
    assert [(o["name"], o["type"], o["default"]) for o in hello["options"]] == [
        ("greeting", "str (length >= 1)", None),
        ("rows", "int >= 1", 3),
    ]
    text = sluice(hello_site, "plugins", "--kind", "source").stdout
    assert "source hello  Greetings, one a row.\n  from: sluice-hello\n" in text


def test_installed_plugin_options_are_checked_with_lines(hello_site: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "bad", "{type: hello, greting: x}")
    result = sluice(hello_site, "validate", str(project))
    assert result.returncode == 2
    assert (
        "sluice.yaml:4: object 1001 (greetings): hello source: unknown option 'greting'. Did you mean 'greeting'?"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_installed_plugin_runs(hello_site: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "good", "{type: hello, greeting: hi, rows: 4}")
    result = sluice(hello_site, "run", str(project), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["objects"]["1001"]["status"] == "loaded"
    assert summary["objects"]["1001"]["rows"] == 4


def test_installed_plugin_is_in_the_schema(hello_site: Path) -> None:
    result = sluice(hello_site, "schema")
    assert result.returncode == 0, result.stderr
    assert "source-hello" in json.loads(result.stdout)["$defs"]


def test_entry_point_that_is_not_a_plugin_is_one_line(tmp_path: Path) -> None:
    package = make_package(
        tmp_path, "sluice-broken", 'broken = "sluice_broken:NOT_A_PLUGIN"', {"__init__.py": "NOT_A_PLUGIN = 42\n"}
    )
    site = tmp_path / "site"
    install(package, site)
    result = sluice(site, "plugins")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: entry point 'broken' (sluice_broken:NOT_A_PLUGIN) of sluice-broken must name a sluice.plugins.Plugin "
        "or a list of them, got int"
    ]

"""The built-in lake: Parquet files in a local folder (S3-compatible storage comes as another plugin)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings


class LocalLakeOptions(Settings):
    """``lake: {type: local, path: lake}``, or just ``lake: lake``."""

    path: Annotated[str, Meta(description="Folder of the lake; relative to the project folder. Default: .sluice/lake.")] = ""


PLUGINS: list[Plugin] = [
    Plugin(
        "lake",
        "local",
        LocalLakeOptions,
        "sluice.lake.registry:open_local",
        "Parquet files in a local folder, one sub-folder per layer, replaced atomically.",
    ),
]

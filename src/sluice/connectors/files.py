"""File sources: CSV, JSON (array of objects or JSON Lines), JSON Lines and Parquet.

Paths are relative to the project folder. CSV, JSON Lines and Parquet stream in blocks; a JSON array is
read whole. Streaming readers infer column types from the first block, so a column whose type changes
further down (numbers, then text) fails with a message that names the line and the column and
suggests ``column_types`` (JSON: :mod:`sluice.connectors.json_lines`). CSV quoted fields may hold line
breaks, and an empty unquoted field is NULL (:func:`null_strings`).

>>> from sluice.project.model import SourceSpec
>>> source = CsvSource(SourceSpec("csv", {"path": "data/users.csv"}), context)  # doctest: +SKIP
>>> source.read().read_all()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import xxhash

from sluice.connectors.base import Source
from sluice.connectors.batching import schema_overrides, stream
from sluice.connectors.plugins import DEFAULT_BATCH_ROWS, CsvOptions, FileOptions, JsonOptions, ParquetOptions
from sluice.errors import TerminalError, did_you_mean
from sluice.lake.kept_files import SourceFile

F = TypeVar("F", bound=FileOptions)
PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError)


class FileSource(Source[F], Generic[F]):
    """A source that reads one file below the project folder; ``options`` are the kind's typed options."""

    kind: ClassVar[str] = "file"

    @property
    def path(self) -> Path:
        """The absolute path of the file (``path`` resolved against the project folder)."""
        path = Path(self.options.path).expanduser()
        return path if path.is_absolute() else (self.context.root / path).resolve()

    def existing_path(self) -> Path:
        """:attr:`path`, or a TerminalError naming both the configured and the resolved path when missing."""
        path = self.path
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise TerminalError(
                f"{self.kind} source: '{self.spec.get('path')}' {what} (looked for {path}); "
                f"check the 'path' option: relative paths start at the project folder {self.context.root}"
            )
        return path

    def input_fingerprint(self) -> str | None:
        """Path, size and a hash of the whole content (:func:`content_digest`), or None when unreadable.

        The content, not the modification time, decides: a file rewritten with the same size and
        mtime (``cp -p``, ``rsync -t``, ``tar x``, a restore, a file system with one-second times)
        is still noticed. It costs one read of the file per plan, see :func:`content_digest`.
        """
        try:
            path = self.path
            size = path.stat().st_size
            digest = content_digest(path)
        except OSError:
            return None
        return hashlib.blake2b(f"{path}|{size}|xxh3_128:{digest}".encode(), digest_size=16).hexdigest()

    def unreadable(self, exc: Exception) -> TerminalError:
        """A parse error as a TerminalError naming the file."""
        return TerminalError(f"{self.kind} source {self.path}: cannot read the file: {exc}{self.type_hint(exc)}")

    def failed(self, exc: Exception) -> Exception | None:
        """Translate a parse error raised while streaming; anything else passes through."""
        return self.unreadable(exc) if isinstance(exc, PARSE_ERRORS) else None

    def type_hint(self, exc: Exception) -> str:
        text = str(exc)
        if "conversion error" in text.lower() or "changed from" in text:
            return (
                ". Column types are guessed from the first block of the file; set them with "
                "column_types: {column: string} (or a larger block_size)"
            )
        return ""


class CsvSource(FileSource[CsvOptions]):
    """``{type: csv, path: data/x.csv, delimiter: ';', header: true}``, streamed in blocks."""

    columns: tuple[str, ...] = ()  # the file's column names, once it is open (to name a column in errors)

    kind = "csv"

    def read(self) -> pa.RecordBatchReader:
        path = self.existing_path()
        options = self.options
        names = options.column_names
        read_options = pa_csv.ReadOptions(
            encoding=options.encoding,
            skip_rows=options.skip_rows,
            column_names=list(names) if names else None,
            autogenerate_column_names=not options.header and not names,
            block_size=options.block_size,
        )
        if options.header and names:
            read_options.skip_rows_after_names = 1
        parse_options = pa_csv.ParseOptions(
            delimiter=options.delimiter,
            quote_char=options.quote_char or False,
            newlines_in_values=options.newlines_in_values,
        )
        convert = pa_csv.ConvertOptions(column_types=schema_overrides(options.column_types, f"csv source {path}"))
        nulls = null_strings(options)
        if nulls is not None:
            convert.null_values = nulls
            convert.strings_can_be_null = True
            convert.quoted_strings_can_be_null = False
        try:
            reader = pa_csv.open_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert)
            self.columns = tuple(reader.schema.names)
            undecoded = self.undecoded(reader.schema)
            if undecoded:
                reader.close()
                raise TerminalError(undecoded)
            wide = wide_integer_types(path, reader.schema, read_options, parse_options, convert)
            if wide:
                reader.close()
                convert.column_types = {**convert.column_types, **wide}
                reader = pa_csv.open_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert)
        except PARSE_ERRORS as exc:
            raise self.unreadable(exc) from exc
        return stream(reader.schema, reader, on_error=self.failed)

    def undecoded(self, schema: pa.Schema) -> str:
        """Why the file is refused when a column not declared in ``column_types`` came out as ``binary`` (pyarrow infers
        that for text that is not valid in ``encoding``, a Latin-1 file read as UTF-8: bytes where the user expects
        text), or ""."""
        declared = set(self.options.column_types or {})
        for field in schema:
            if pa.types.is_binary(field.type) and field.name not in declared:
                return (
                    f"{self.kind} source {self.path}: column {field.name!r} is not valid {self.options.encoding} text; "
                    f"set the file's encoding (encoding: latin1, for one), or declare column_types: {{{field.name}: binary}} "
                    "to load its bytes"
                )
        return ""

    def type_hint(self, exc: Exception) -> str:
        text = str(exc)
        if "newlines_in_values" in text and not self.options.newlines_in_values:
            return ". A quoted field holds a line break: set newlines_in_values: true"
        if "newlines_in_values" in text or "straddl" in text:
            return (
                ". A quoted field is never closed or is longer than block_size: check the file for a stray "
                f"quote character ({self.options.quote_char or 'none'}), or raise block_size"
            )
        return super().type_hint(exc)

    def unreadable(self, exc: Exception) -> TerminalError:
        """pyarrow's own advice, which names its API's options, is replaced by :meth:`type_hint`'s; a column
        pyarrow numbers from 0 (``In CSV column #1``) is named (``column 'v'``)."""
        text = str(exc)
        if "newlines_in_values" in text or "straddl" in text:
            text = text.split(" This can mean", 1)[0].split(" (try to", 1)[0].rstrip(".")
        hint = self.type_hint(exc)
        match = _CSV_COLUMN.search(text)
        if match and int(match.group(1)) < len(self.columns):
            name = self.columns[int(match.group(1))]
            text = text.replace(match.group(0), f"In column {name!r}")
            if hint.startswith(". Column types are guessed"):
                hint = (
                    f". Column types are guessed from the first block of the file; set this one: column_types: {{{name}: string}}"
                )
        return TerminalError(f"{self.kind} source {self.path}: cannot read the file: {text}{hint}")


_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
_INTEGER_TEXT = r"^[ \t]*[-+]?[0-9]+[ \t]*$"
_UINT64_MAX = 2**64 - 1
_DECIMAL_DIGITS = 38


def wide_integer_types(
    path: Path,
    schema: pa.Schema,
    read_options: pa_csv.ReadOptions,
    parse_options: pa_csv.ParseOptions,
    convert: pa_csv.ConvertOptions,
) -> dict[str, pa.DataType]:
    """Types for the columns pyarrow guessed as floating point because their integers do not fit int64.

    pyarrow infers ``int64`` for integers and falls back to ``double`` past 2**63-1, where 2**63-1 and
    2**63 become the same number. A column whose first block holds only integers gets ``uint64`` when
    they are all in 0..2**64-1, ``decimal128(38, 0)`` when they have at most 38 digits, else ``string``:
    never a rounded value. Only columns guessed as ``double`` are re-read, as text, from the first block.
    """
    guessed = [f.name for f in schema if pa.types.is_floating(f.type) and f.name not in convert.column_types]
    if not guessed:
        return {}
    as_text = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in guessed},
        include_columns=guessed,
        null_values=convert.null_values,
        strings_can_be_null=True,
        quoted_strings_can_be_null=convert.quoted_strings_can_be_null,
    )
    with pa_csv.open_csv(path, read_options=read_options, parse_options=parse_options, convert_options=as_text) as reader:
        try:
            first = reader.read_next_batch()
        except StopIteration:
            return {}
    wide: dict[str, pa.DataType] = {}
    for name in guessed:
        column = first.column(name).drop_null()
        if len(column) == 0 or not pc.all(pc.match_substring_regex(column, _INTEGER_TEXT)).as_py():
            continue
        values = [int(text) for text in column.to_pylist()]  # first block only, and only columns already all integers
        if all(0 <= value <= _UINT64_MAX for value in values):
            wide[name] = pa.uint64()
        elif all(len(str(abs(value))) <= _DECIMAL_DIGITS for value in values):
            wide[name] = pa.decimal128(_DECIMAL_DIGITS, 0)
        else:
            wide[name] = pa.string()
    return wide


def null_strings(options: CsvOptions) -> list[str] | None:
    """The values a CSV source reads as NULL in every column, or None for pyarrow's defaults.

    ``empty_as_null`` adds the empty field to ``null_values``; quoted values are never NULL, so a
    quoted ``""`` stays an empty string. With neither, pyarrow's defaults apply: empty or ``NULL``
    numbers, dates and booleans are NULL, text is kept as written.
    """
    values = list(options.null_values or ())
    if options.empty_as_null and "" not in values:
        values.append("")
    return values if values or options.null_values is not None else None


class JsonLinesSource(FileSource[JsonOptions]):
    """``{type: jsonl, path: data/x.jsonl}``: one JSON object per line, streamed in blocks."""

    kind = "jsonl"

    def read(self) -> pa.RecordBatchReader:
        return self.read_lines(self.existing_path())

    def read_lines(self, path: Path) -> pa.RecordBatchReader:
        from sluice.connectors.json_lines import read_blocks  # here: JSON's readers load pyarrow.json and a thread pool

        where = f"{self.kind} source {path}"
        overrides = schema_overrides(self.options.column_types, where)
        try:
            reader = read_blocks(path, where, overrides, self.options.block_size)
        except PARSE_ERRORS as exc:
            raise self.unreadable(exc) from exc
        except TerminalError as exc:
            translated = self.failed(exc)
            if translated is None:
                raise
            raise translated from exc
        return stream(reader.schema, reader, on_error=self.failed)


class JsonSource(JsonLinesSource):
    """``{type: json, path: data/x.json}``: a JSON array of objects, or JSON Lines when the file is line-delimited."""

    kind = "json"

    def unreadable(self, exc: Exception) -> TerminalError:
        error = exc if isinstance(exc, TerminalError) else super().unreadable(exc)
        return TerminalError(f"{error}; a json source holds an array of objects ([{{...}}, ...]) or one object per line")

    def failed(self, exc: Exception) -> Exception | None:
        if isinstance(exc, TerminalError) and "is not valid JSON" in str(exc):
            return self.unreadable(exc)
        return super().failed(exc)

    def read(self) -> pa.RecordBatchReader:
        path = self.existing_path()
        if _first_character(path) != "[":
            return self.read_lines(path)
        try:
            rows = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TerminalError(f"json source {path}: not valid JSON: {exc}") from exc
        if not all(isinstance(row, dict) for row in rows):
            raise TerminalError(f'json source {path}: expected an array of objects like [{{"id": 1}}], found other values')
        return self.table_reader(path, rows)

    def table_reader(self, path: Path, rows: list[dict[str, Any]]) -> pa.RecordBatchReader:
        from sluice.connectors.json_lines import TEXT_TYPES, array_misfit, as_text

        where = f"json source {path}"
        overrides = schema_overrides(self.options.column_types, where)
        text = [name for name, type_ in overrides.items() if type_ in TEXT_TYPES]
        for row in rows:  # the array is already Python objects: read whole, not streamed
            for name in text:
                if name in row:
                    row[name] = as_text(row[name])
        try:
            inferred = pa.array(rows) if rows else pa.array([], pa.struct([]))
            table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(inferred)])
            for name, type_ in overrides.items():
                if name in table.column_names:
                    table = table.set_column(table.column_names.index(name), name, table.column(name).cast(type_))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            error = array_misfit(where, path, rows, overrides)
            raise (
                error or TerminalError(f"{where}: values of one key have different types ({exc}); make them consistent")
            ) from exc
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=DEFAULT_BATCH_ROWS))


class ParquetSource(FileSource[ParquetOptions]):
    """``{type: parquet, path: data/x.parquet}``, streamed row group by row group."""

    kind = "parquet"
    _whole: SourceFile | None = None

    def whole_file(self) -> SourceFile | None:
        """The file, once :meth:`read` opened it, unless ``columns`` leaves some out or reorders them."""
        return self._whole

    def read(self) -> pa.RecordBatchReader:
        path = self.existing_path()
        columns = self.options.columns
        self._whole = None
        try:
            opened = SourceFile.opened(path)
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise TerminalError(f"parquet source {path}: not a readable Parquet file: {exc}") from exc
        schema = parquet.schema_arrow
        if columns:
            missing = [str(name) for name in columns if str(name) not in schema.names]
            if missing:
                parquet.close()
                raise TerminalError(
                    f"parquet source {path}: no column {missing[0]!r} in the file.{did_you_mean(missing[0], schema.names)} "
                    f"It has: {', '.join(schema.names)}"
                )
            schema = pa.schema([schema.field(str(name)) for name in columns])
        if not columns or [str(name) for name in columns] == schema.names == parquet.schema_arrow.names:
            self._whole = opened

        def batches() -> Iterator[pa.RecordBatch]:
            size = self.options.batch_size
            yield from parquet.iter_batches(batch_size=size, columns=list(columns) if columns else None)

        return stream(schema, batches(), on_error=self.failed, on_close=parquet.close)


def content_digest(path: Path) -> str:
    """The xxh3_128 hash of a file's bytes (32 hex digits), read in a stream of 256 KiB blocks.

    xxh3_128 (xxHash, https://xxhash.com, BSD-2-Clause, through the ``xxhash`` package) is a
    non-cryptographic hash: it guards against accidental change, not against a file crafted to
    collide. Measured by ``python bench/freshness.py`` (1 GiB = 2^30 bytes, 2-core shared machine,
    best and median of 3, two runs): 0.05-0.06 s (18-21 GB/s) with the file in the page cache and
    0.31-0.37 s (2.9-3.4 GB/s) with its pages dropped first, where the storage sets the pace. BLAKE2b
    through ``hashlib.file_digest``, the standard library's alternative, took 0.84-1.0 s
    (1.1-1.3 GB/s) either way; the old stat-only fingerprint took microseconds but could not see a
    same-size, same-mtime rewrite. The coordinator pays this once per planned file source that has
    a previous output, and once more when that source turns out stale and runs (then it reads the
    whole file anyway).
    Raises OSError when the file cannot be read.
    """
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, xxhash.xxh3_128).hexdigest()


def _first_character(path: Path) -> str:
    """The first non-blank character of a file (after a UTF-8 byte order mark), or ``""`` for a blank file."""
    with path.open("rb") as handle:
        while chunk := handle.read(4096):
            text = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if text:
                return chr(text[0])
    return ""


FILE_SOURCES: dict[str, type[FileSource[Any]]] = {
    "csv": CsvSource,
    "json": JsonSource,
    "jsonl": JsonLinesSource,
    "parquet": ParquetSource,
}

__all__ = ["FILE_SOURCES", "CsvSource", "FileSource", "JsonLinesSource", "JsonSource", "ParquetSource", "content_digest"]

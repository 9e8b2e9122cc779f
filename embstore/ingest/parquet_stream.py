"""Parquet files, streamed a record batch at a time (``ParquetFile.iter_batches``: one row group in memory at most).

Opening reads every file's footer (``pyarrow.dataset`` fragments): the columns (each file's own, in order of first
appearance) and the total row count are known before any data is read. Files found in a folder or through a glob
take Hive-style partition folders below it (``year=2024/part-0.parquet``) as columns, typed as ``pyarrow.dataset``
infers them (``partitioning="hive"``); a column the file itself holds wins over a partition folder of the same name.
Each file keeps its own schema: a later file's extra columns are kept, not projected away.
"""
from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa

from ..errors import InputError
from .locations import Loc
from .sources import Piece


class ParquetTables:
    """The Parquet files of one source, with their footers read."""

    ignored_files = 0

    def __init__(self, files: list[tuple[Loc, Loc | None]], batch_rows: int):
        self.batch_rows = batch_rows
        self.files = len(files)
        self._parts: list[tuple[Loc, pa.Schema, dict[str, pa.Scalar]]] = []  # file, its schema, its partition values
        columns: dict[str, None] = {}
        total = 0
        for group in _groups(files):
            for loc, schema, keys, rows in _footers(group):
                self._parts.append((loc, schema, keys))
                columns.update(dict.fromkeys(schema.names + list(keys)))
                total += rows
        self.columns = list(columns)
        self.rows_hint: int | None = total

    def pieces(self) -> Iterator[Piece]:
        import pyarrow.parquet as pq

        for loc, schema, keys in self._parts:
            source = loc.arrow_input()
            try:
                try:
                    batches = pq.ParquetFile(source).iter_batches(batch_size=self.batch_rows, use_threads=True)
                    rows = 0
                    for batch in batches:
                        yield Piece(_with_keys(pa.Table.from_batches([batch]), keys), loc.url, rows + 1, [])
                        rows += batch.num_rows
                except (pa.ArrowInvalid, OSError) as e:
                    raise InputError(f"cannot read {loc.shown} as Parquet: {str(e).splitlines()[0]}") from None
                if rows == 0:
                    yield Piece(_with_keys(schema.empty_table(), keys), loc.url, 1, [])
            finally:
                if not isinstance(source, str):
                    source.close()


def _groups(files: list[tuple[Loc, Loc | None]]) -> Iterator[list[tuple[Loc, Loc | None]]]:
    """Runs of files found under the same folder (partitioned alike), in order."""
    run: list[tuple[Loc, Loc | None]] = []
    for item in files:
        if run and (run[-1][1] != item[1] or run[-1][0].fs is not item[0].fs):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def _footers(group: list[tuple[Loc, Loc | None]]) -> Iterator[tuple[Loc, pa.Schema, dict[str, pa.Scalar], int]]:
    """Each file's schema, Hive partition values and row count, from its footer."""
    import pyarrow.dataset as ds

    root = group[0][1]
    fs = group[0][0].fs
    by_path = {loc.path: loc for loc, _ in group}
    try:
        dataset = ds.dataset([loc.path for loc, _ in group], format="parquet", filesystem=fs,
                             partitioning="hive" if root is not None else None,
                             partition_base_dir=root.path if root is not None else None)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"cannot read {_named(e, group)} as Parquet: {_reason(e)}") from None
    for fragment in dataset.get_fragments():
        loc = by_path.get(fragment.path) or Loc(fragment.path, fs, fragment.path)
        try:
            schema = fragment.physical_schema
            rows = fragment.metadata.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"cannot read {loc.shown} as Parquet: {_reason(e)}") from None
        keys = {}
        for name, value in ds.get_partition_keys(fragment.partition_expression).items():
            if name not in schema.names:
                keys[name] = pa.scalar(value, dataset.schema.field(name).type)
        keys = {name: keys[name] for name in dataset.schema.names if name in keys}  # in the folders' order
        yield loc, schema, keys, rows


def _with_keys(table: pa.Table, keys: dict[str, pa.Scalar]) -> pa.Table:
    for name, value in keys.items():
        table = table.append_column(name, pa.repeat(value, table.num_rows))
    return table


def _named(e: Exception, group: list[tuple[Loc, Any]]) -> str:
    """The file pyarrow's error names, as messages show it."""
    text = str(e)
    return next((loc.shown for loc, _ in group if f"'{loc.path}'" in text), group[0][0].shown)


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text.rsplit(": ", 1)[-1] if "Could not open Parquet input source" in text else text

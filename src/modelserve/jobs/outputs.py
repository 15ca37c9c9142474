"""Job results: written per chunk as JSON lines keyed by row number, served in any format.

A chunk's results are one blob of lines `{"row": 7, "output": {...}}` in row order. Downloads
read the finished chunks in order and convert as they stream: JSON lines as stored, CSV with a
`row` column and one column per top-level output field (nested values as JSON text), Parquet
with one row group per chunk. Nothing is held in memory beyond one chunk.

The iterators block (file I/O): the HTTP layer streams them from a thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from modelserve.registry.artifacts import ArtifactStore
from modelserve.schemas.jobs import DataFormat

STREAM_PIECE = 64 * 1024


def encode_results(outputs: Iterable[tuple[int, bytes]]) -> bytes:
    """One chunk's results blob from (row, output JSON) pairs in row order."""
    return b"".join(b'{"row":%d,"output":%s}\n' % (row, output) for row, output in outputs)


def output_columns(output_schema: Mapping[str, Any]) -> list[str]:
    """Top-level output fields, in schema order: the CSV columns after `row`."""
    return list((output_schema.get("properties") or {}).keys())


def iter_results(
    store: ArtifactStore, blobs: Sequence[str], fmt: DataFormat, columns: Sequence[str]
) -> Iterator[bytes]:
    """The results of the chunks stored as `blobs` (in row order), in `fmt`."""
    if fmt is DataFormat.JSONL:
        return _jsonl(store, blobs)
    if fmt is DataFormat.CSV:
        return _csv(store, blobs, columns)
    return _parquet(store, blobs, columns)


def _read(store: ArtifactStore, sha256: str) -> bytes:
    with store.open(sha256) as handle:
        return handle.read()


def _records(store: ArtifactStore, sha256: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in _read(store, sha256).splitlines() if line]


def _jsonl(store: ArtifactStore, blobs: Sequence[str]) -> Iterator[bytes]:
    for sha256 in blobs:
        with store.open(sha256) as handle:
            while piece := handle.read(STREAM_PIECE):
                yield piece


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _csv(store: ArtifactStore, blobs: Sequence[str], columns: Sequence[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", *columns])
    for sha256 in blobs:
        for record in _records(store, sha256):
            output = record["output"]
            if isinstance(output, dict):
                writer.writerow([record["row"], *(_cell(output.get(c)) for c in columns)])
            else:  # an output that is not an object: one column, whatever it is called
                writer.writerow([record["row"], _cell(output)])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken out as they come (a streamed Parquet file)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _parquet(store: ArtifactStore, blobs: Sequence[str], columns: Sequence[str]) -> Iterator[bytes]:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    sink = _Sink()
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    for sha256 in blobs:
        rows = [
            {
                "row": r["row"],
                **(r["output"] if isinstance(r["output"], dict) else {"output": r["output"]}),
            }
            for r in _records(store, sha256)
        ]
        if not rows:
            continue
        table = pa.Table.from_pylist(rows, schema=schema)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(sink, schema)
        writer.write_table(table)
        yield sink.take()
    if writer is None:  # no results at all: a valid file with the columns, and no rows
        fields = [pa.field("row", pa.int64()), *(pa.field(c, pa.string()) for c in columns)]
        writer = pq.ParquetWriter(sink, pa.schema(fields))
    writer.close()
    yield sink.take()

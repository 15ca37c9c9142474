"""Reading job inputs: one pass at submit to count rows and cut chunks, then each chunk alone.

An upload is a list of parts (blobs); `PartsReader` reads them as one seekable file. JSON lines
and CSV chunks remember their byte range, so a chunk reads only its own bytes; Parquet chunks
read the row groups that hold their rows. Blank lines are not rows. Rows come out as what an
HTTP client would have sent: a JSON line as it is, a CSV record or a Parquet row as a JSON
object (`rows.as_json`), so the model's input is validated by the very code that validates
requests.

Everything here blocks (file I/O): async callers run it in a thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from modelserve.db.repos.jobs import ChunkPlan
from modelserve.errors import InvalidInputError
from modelserve.jobs.work import ChunkWork, InputPart
from modelserve.registry.artifacts import ArtifactStore
from modelserve.schemas.jobs import DataFormat

READ_BUFFER = 256 * 1024
# Chunks of one job: each is a row of the queue, so a tiny chunk size over a large file must
# not become millions of them.
MAX_CHUNKS = 100_000
# A CSV field may be long (an embedded document), but not unbounded.
CSV_FIELD_LIMIT = 16 * 1024 * 1024


class PartsReader(io.RawIOBase):
    """The parts of an upload as one read-only, seekable file."""

    def __init__(self, store: ArtifactStore, parts: Sequence[InputPart]) -> None:
        super().__init__()
        self._store = store
        self._parts = list(parts)
        self._size = sum(p.size for p in parts)
        self._pos = 0
        self._open: tuple[int, BinaryIO] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        index = self._part_at(self._pos)
        part = self._parts[index]
        if self._open is None or self._open[0] != index:
            self._close_part()
            self._open = (index, self._store.open(part.sha256))
        handle = self._open[1]
        handle.seek(self._pos - part.offset)
        want = min(len(view), part.offset + part.size - self._pos)
        data = handle.read(want)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _part_at(self, position: int) -> int:
        low, high = 0, len(self._parts) - 1
        while low < high:  # the last part starting at or before `position`
            middle = (low + high + 1) // 2
            if self._parts[middle].offset <= position:
                low = middle
            else:
                high = middle - 1
        return low

    def _close_part(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def close(self) -> None:
        self._close_part()
        super().close()


def open_parts(store: ArtifactStore, parts: Sequence[InputPart]) -> io.BufferedReader:
    """A buffered reader over an upload's parts."""
    return io.BufferedReader(PartsReader(store, parts), buffer_size=READ_BUFFER)


@dataclass(frozen=True, slots=True)
class InputPlan:
    """What one pass over an input found: its rows, cut into chunks, and its CSV header."""

    total_rows: int
    chunks: list[ChunkPlan]
    columns: tuple[str, ...] = ()


class _Cutter:
    """Cuts rows into chunks of `size` as their byte ranges go by."""

    def __init__(self, size: int, max_rows: int) -> None:
        self.size = size
        self.max_rows = max_rows
        self.rows = 0
        self.chunks: list[ChunkPlan] = []
        self._start: int | None = None
        self._first_row = 0

    def row(self, start: int, end: int) -> None:
        if self.rows >= self.max_rows:
            raise InvalidInputError(
                f"the input has more than {self.max_rows} rows; split it into several jobs",
                details={"max_rows": self.max_rows},
            )
        if self._start is None:
            self._start, self._first_row = start, self.rows
        self.rows += 1
        if self.rows - self._first_row == self.size:
            self._close(end)

    def _close(self, end: int) -> None:
        assert self._start is not None
        _check_chunks(len(self.chunks) + 1, self.size)
        self.chunks.append(ChunkPlan(self._first_row, self.rows, self._start, end))
        self._start = None

    def finish(self, end: int) -> list[ChunkPlan]:
        if self._start is not None:
            self._close(end)
        return self.chunks


def plan_input(stream: BinaryIO, fmt: DataFormat, *, chunk_size: int, max_rows: int) -> InputPlan:
    """Count the rows of an input and cut it into chunks; 422 when it cannot be read."""
    if fmt is DataFormat.PARQUET:
        return _plan_parquet(stream, chunk_size, max_rows)
    cutter = _Cutter(chunk_size, max_rows)
    if fmt is DataFormat.JSONL:
        position = 0
        for line in stream:
            if line.strip():
                cutter.row(position, position + len(line))
            position += len(line)
        return InputPlan(cutter.rows, cutter.finish(position))
    if not _has_quotes(stream):
        return _plan_plain_csv(stream, cutter)
    lines = _Lines(stream)
    reader = _csv_reader(lines)
    try:
        header = next(reader, None)
        while header is not None and not header:  # blank lines before the header
            header = next(reader, None)
        if header is None:
            raise InvalidInputError("the CSV file has no header line")
        columns = _columns(header)
        start = lines.position
        for record in reader:
            if record:
                cutter.row(start, lines.position)
            start = lines.position
    except csv.Error as exc:
        raise InvalidInputError(f"the CSV file cannot be read: {exc}") from None
    return InputPlan(cutter.rows, cutter.finish(lines.position), columns)


def _has_quotes(stream: BinaryIO) -> bool:
    """True when the file holds a double quote anywhere (then a record may span lines)."""
    found = False
    while piece := stream.read(READ_BUFFER):
        if b'"' in piece:
            found = True
            break
    stream.seek(0)
    return found


def _plan_plain_csv(stream: BinaryIO, cutter: _Cutter) -> InputPlan:
    """A CSV file without quotes: every non-empty line is one record, as `csv.reader` reads
    it, counted at the speed of JSON lines (the csv module is several times slower)."""
    position = 0
    columns: tuple[str, ...] | None = None
    for line in stream:
        start, position = position, position + len(line)
        if not line.strip(b"\r\n"):
            continue
        if len(line) > CSV_FIELD_LIMIT and max(map(len, line.split(b","))) > CSV_FIELD_LIMIT:
            # What csv.reader refuses, refused here too (chunks read with it).
            raise InvalidInputError(
                f"the CSV file cannot be read: a field is over {CSV_FIELD_LIMIT} bytes"
            )
        if columns is None:
            columns = _header(line)
            continue
        cutter.row(start, position)
    if columns is None:
        raise InvalidInputError("the CSV file has no header line")
    return InputPlan(cutter.rows, cutter.finish(position), columns)


def _header(line: bytes) -> tuple[str, ...]:
    try:
        [header] = list(_csv_reader([line.decode("utf-8", "surrogateescape")]))
    except (csv.Error, ValueError) as exc:
        raise InvalidInputError(f"the CSV file cannot be read: {exc}") from None
    return _columns(header)


def _columns(header: list[str]) -> tuple[str, ...]:
    columns = tuple(header)
    if len(set(columns)) != len(columns) or not all(columns):
        raise InvalidInputError("the CSV header has empty or repeated column names")
    return columns


def _plan_parquet(stream: BinaryIO, chunk_size: int, max_rows: int) -> InputPlan:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        meta = pq.ParquetFile(stream).metadata
        names = tuple(pq.ParquetFile(stream).schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"the file is not a readable Parquet file: {exc}") from None
    total = int(meta.num_rows)
    if total > max_rows:
        raise InvalidInputError(
            f"the input has more than {max_rows} rows; split it into several jobs",
            details={"max_rows": max_rows},
        )
    _check_chunks(-(-total // chunk_size), chunk_size)
    chunks = [ChunkPlan(s, min(s + chunk_size, total)) for s in range(0, total, chunk_size)]
    return InputPlan(total, chunks, names)


def _check_chunks(count: int, chunk_size: int) -> None:
    if count > MAX_CHUNKS:
        raise InvalidInputError(
            f"a chunk_size of {chunk_size} cuts this input into more than {MAX_CHUNKS} chunks;"
            " give a larger chunk_size",
            details={"max_chunks": MAX_CHUNKS},
        )


class _Lines:
    """Text lines of a binary stream, counting the bytes handed out (for CSV offsets)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.position = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._stream:
            self.position += len(line)
            # Undecodable bytes survive as lone surrogates; the row holding them fails alone.
            yield line.decode("utf-8", "surrogateescape")


def _csv_reader(lines: Any) -> Iterator[list[str]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    return csv.reader(iter(lines), strict=True)


# -- reading one chunk -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record that cannot become a request at all (a CSV line with the wrong field count)."""

    message: str


Row = tuple[int, bytes | dict[str, Any] | BadRecord]


def read_chunk(stream: BinaryIO, work: ChunkWork) -> list[Row]:
    """The rows of one chunk, numbered, as JSON bytes (JSON lines) or column dicts."""
    fmt = DataFormat(work.input_format)
    if fmt is DataFormat.PARQUET:
        return _read_parquet(stream, work)
    assert work.byte_start is not None
    assert work.byte_end is not None
    stream.seek(work.byte_start)
    data = stream.read(work.byte_end - work.byte_start)
    rows: list[Row] = []
    number = work.row_start
    if fmt is DataFormat.JSONL:
        for line in data.splitlines():
            if line.strip():
                rows.append((number, line))
                number += 1
    else:
        text = data.decode("utf-8", "surrogateescape")
        try:
            for record in _csv_reader(text.splitlines(keepends=True)):
                if record:
                    rows.append((number, _record(work.columns, record)))
                    number += 1
        except csv.Error as exc:  # it parsed at submit: the bytes changed since
            raise InputChangedError(f"chunk {work.task.index}: {exc}") from None
    if number != work.row_end:
        raise InputChangedError(f"chunk {work.task.index} read {number - work.row_start} rows")
    return rows


class InputChangedError(Exception):
    """Raised when a chunk's bytes no longer hold the rows counted at submit."""


def _record(columns: Sequence[str], record: list[str]) -> dict[str, Any] | BadRecord:
    if len(record) != len(columns):
        return BadRecord(f"the record has {len(record)} fields and the header {len(columns)}")
    return dict(zip(columns, record, strict=True))


def _read_parquet(stream: BinaryIO, work: ChunkWork) -> list[Row]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(stream)
    rows: list[Row] = []
    first = 0
    for group in range(file.num_row_groups):
        count = file.metadata.row_group(group).num_rows
        last = first + count
        if last > work.row_start and first < work.row_end:
            values = file.read_row_group(group).to_pylist()
            begin = max(work.row_start, first) - first
            end = min(work.row_end, last) - first
            rows.extend((first + i, values[i]) for i in range(begin, end))
        first = last
    if len(rows) != work.rows:
        raise InputChangedError(f"chunk {work.task.index} read {len(rows)} rows")
    return rows

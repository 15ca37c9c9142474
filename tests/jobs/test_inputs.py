"""Reading inputs: row counts and chunk cuts, byte ranges that hold exactly their rows, an
upload in parts read as one file, and CSV cells turned into the JSON their fields take."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from modelserve.errors import InvalidInputError
from modelserve.jobs.inputs import BadRecord, open_parts, plan_input, read_chunk
from modelserve.jobs.rows import as_json, field_kinds
from modelserve.jobs.work import ChunkTask, ChunkWork, InputPart
from modelserve.registry.artifacts import MemoryArtifactStore
from modelserve.schemas.jobs import DataFormat


def chunks_of(data: bytes, fmt: DataFormat, size: int) -> list[list[tuple[int, Any]]]:
    plan = plan_input(io.BytesIO(data), fmt, chunk_size=size, max_rows=10_000)
    found = []
    for index, chunk in enumerate(plan.chunks):
        work = ChunkWork(
            task=ChunkTask("a" * 32, index),
            model="m",
            version="1",
            input_format=fmt.value,
            row_start=chunk.row_start,
            row_end=chunk.row_end,
            byte_start=chunk.byte_start,
            byte_end=chunk.byte_end,
            parts=(),
            columns=plan.columns,
        )
        found.append(read_chunk(io.BytesIO(data), work))
    return found


def test_json_lines_skip_blank_lines_and_cut_exact_ranges() -> None:
    data = b'\n{"x": 0}\n\n   \n{"x": 1}\r\n{"x": 2}\n{"x": 3}'  # no newline at the end
    plan = plan_input(io.BytesIO(data), DataFormat.JSONL, chunk_size=3, max_rows=10)
    assert plan.total_rows == 4
    assert [(c.row_start, c.row_end) for c in plan.chunks] == [(0, 3), (3, 4)]
    rows = [r for chunk in chunks_of(data, DataFormat.JSONL, 3) for r in chunk]
    assert [(n, orjson.loads(r)) for n, r in rows] == [(i, {"x": i}) for i in range(4)]


def test_csv_records_may_span_lines_across_chunk_cuts() -> None:
    data = b'a,b\n1,"two\nlines"\n2,"x,y"\n\n3,z\n4,"q""uote"\n'
    [first, second] = chunks_of(data, DataFormat.CSV, 2)
    assert first == [(0, {"a": "1", "b": "two\nlines"}), (1, {"a": "2", "b": "x,y"})]
    assert second == [(2, {"a": "3", "b": "z"}), (3, {"a": "4", "b": 'q"uote'})]


def test_a_csv_record_with_the_wrong_field_count_is_a_bad_record() -> None:
    [[row]] = chunks_of(b"a,b\n1,2,3\n", DataFormat.CSV, 5)
    assert isinstance(row[1], BadRecord)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", DataFormat.CSV, "no header"),
        (b"a,,b\n", DataFormat.CSV, "empty or repeated"),
        (b'a\n"unclosed\n', DataFormat.CSV, "cannot be read"),
        (b'"unclosed header\n', DataFormat.CSV, "cannot be read"),
        (b"a\n" + b"x" * (17 * 1024 * 1024) + b"\n", DataFormat.CSV, "cannot be read"),
        (b"not parquet at all", DataFormat.PARQUET, "Parquet"),
        (b"{}\n" * 11, DataFormat.JSONL, "more than 10 rows"),
    ],
)
def test_unreadable_inputs_say_why(data: bytes, fmt: DataFormat, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_input(io.BytesIO(data), fmt, chunk_size=5, max_rows=10)


def test_an_upload_in_parts_reads_as_one_seekable_file() -> None:
    store = MemoryArtifactStore()
    data = bytes(range(256)) * 40
    parts = []
    for offset in range(0, len(data), 777):
        piece = data[offset : offset + 777]
        writer = store.writer(max_bytes=len(piece))
        writer.write(piece)
        parts.append(InputPart(offset, len(piece), writer.commit().sha256))
    with open_parts(store, parts) as stream:
        assert stream.read() == data
        stream.seek(5000)
        assert stream.read(1000) == data[5000:6000]
        stream.seek(-10, io.SEEK_END)
        assert stream.read() == data[-10:]
        stream.seek(776)
        assert stream.read(3) == data[776:779]


def test_csv_cells_become_the_json_their_fields_take() -> None:
    schema = {
        "properties": {
            "n": {"type": "number"},
            "i": {"type": "integer"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "text": {"type": "string"},
        }
    }
    kinds = field_kinds(schema)
    assert kinds["note"] == ("string", "null")
    row = {"n": "1.5", "i": "2", "flag": "TRUE", "tags": '["a","b"]', "note": "", "text": "007"}
    assert orjson.loads(as_json(row, DataFormat.CSV, kinds)) == {
        "n": 1.5,
        "i": 2,
        "flag": True,
        "tags": ["a", "b"],
        "note": None,  # an empty cell of a field that takes null is null
        "text": "007",
    }
    # What does not fit stays a string (the model's schema then says what is wrong) and an
    # empty cell of a non-string field is no value at all.
    odd = {"n": "abc", "flag": "yes", "i": ""}
    assert orjson.loads(as_json(odd, DataFormat.CSV, kinds)) == {"n": "abc", "flag": "yes"}


def test_csv_without_quotes_is_cut_the_same_way_as_with_them() -> None:
    rows = [f"{i},{i * 2}" for i in range(9)]
    plain = (
        "\r\n" + "a,b\r\n" + "\r\n".join(rows[:4]) + "\r\n\r\n" + "\r\n".join(rows[4:])
    ).encode()
    quoted = plain.replace(b"8,16", b'8,"16"')  # one quote: the csv module cuts this one
    cut_plain = chunks_of(plain, DataFormat.CSV, 4)
    assert cut_plain == chunks_of(quoted, DataFormat.CSV, 4)
    assert [r for chunk in cut_plain for r in chunk] == [
        (i, {"a": str(i), "b": str(i * 2)}) for i in range(9)
    ]


def test_a_tiny_chunk_size_cannot_make_too_many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelserve.jobs import inputs

    monkeypatch.setattr(inputs, "MAX_CHUNKS", 3)
    assert (
        len(plan_input(io.BytesIO(b"{}\n" * 9), DataFormat.JSONL, chunk_size=3, max_rows=99).chunks)
        == 3
    )
    with pytest.raises(InvalidInputError, match="more than 3 chunks"):
        plan_input(io.BytesIO(b"{}\n" * 10), DataFormat.JSONL, chunk_size=3, max_rows=99)

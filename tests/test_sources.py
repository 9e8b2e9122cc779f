"""Streaming sources: files, folders, globs, lists and fsspec URLs, read in pieces of bounded size."""
from __future__ import annotations

import importlib.util
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_png, write_csv, write_jsonl
from embstore import InputError
from embstore.ingest import csv_stream
from embstore.ingest.readers import read_source
from embstore.ingest.sources import open_source


def _rows(n, start=0):
    return [{"text": f"row {i}", "n": i} for i in range(start, start + n)]


def _check_pieces(source, batch_rows):
    """Every piece is small and from one file; first_row counts on within each file. Returns rows by file."""
    by_file: dict[str, list[dict]] = {}
    for piece in source.pieces():
        assert piece.table.num_rows <= batch_rows
        got = by_file.setdefault(piece.file, [])
        assert piece.first_row == len(got) + 1
        got.extend(piece.table.to_pylist())
    return by_file


@pytest.fixture
def memfs():
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/t{uuid.uuid4().hex}"
    yield fs, root
    fs.rm(root, recursive=True)


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_many_files_stream_in_small_pieces_that_add_up(tmp_path, kind):
    sizes = [150, 1, 77, 100]
    data = tmp_path / "data"
    data.mkdir()
    start = 0
    for i, n in enumerate(sizes):
        rows, path = _rows(n, start), data / f"part-{i}.{kind}"
        start += n
        if kind == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=40)
        elif kind == "jsonl":
            write_jsonl(path, rows)
        else:
            write_csv(path, rows, delimiter="\t" if kind == "tsv" else ",")
    (data / "_SUCCESS").write_text("")
    (data / ".hidden.csv").write_text("x\n1\n")
    source = open_source(data, batch_rows=7)
    assert (source.kind, source.columns, source.files, source.name, source.base_dir) == (
        kind, ["text", "n"], 4, str(data), str(data))
    assert source.rows_hint == (sum(sizes) if kind == "parquet" else None)
    by_file = _check_pieces(source, 7)
    assert list(by_file) == [str(data / f"part-{i}.{kind}") for i in range(4)]
    assert [len(v) for v in by_file.values()] == sizes
    assert [r["n"] for v in by_file.values() for r in v] == list(range(sum(sizes)))
    read = read_source(data)
    assert read.table.num_rows == sum(sizes) and read.kind == kind and read.bad_rows == []


def test_opening_a_large_csv_reads_only_its_first_block(tmp_path, monkeypatch):
    """A word in a column of numbers after the first block: opening and the first pieces work, the read stops there
    with the column, the row and the fix."""
    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 4096)
    rows = _rows(3000) + [{"text": "late", "n": "many"}]
    src = write_csv(tmp_path / "big.csv", rows)
    source = open_source(src, batch_rows=100)
    assert source.columns == ["text", "n"]
    pieces = source.pieces()
    first = next(pieces)
    assert first.table.num_rows == 100 and first.table.column("n").type == pa.int64()
    with pytest.raises(InputError) as e:
        list(pieces)
    message = str(e.value)
    assert "\n" not in message and message.startswith("big.csv: column 'n' was read as int64")
    assert "row 3002" in message and "'many'" in message and "Parquet with that column's type given" in message


def test_text_that_is_not_utf8_after_the_first_block_is_quarantined(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 1024)
    src = tmp_path / "u.csv"
    src.write_bytes(b"text,n\n" + b"".join(b"row %d,%d\n" % (i, i) for i in range(300)) + b"bad \xff\xfe,1\n")
    pieces = list(open_source(src).pieces())
    assert sum(p.table.num_rows for p in pieces) == 300
    [bad] = [b for p in pieces for b in p.bad]
    assert bad["row"] == 302 and bad["reason"].startswith("not utf-8 text: column 'text' has byte 0xff")


def test_csv_bad_rows_are_quarantined_with_their_lines_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_stream, "BLOCK_BYTES", 1024)
    lines = ["text,n"] + [f"row {i},{i}" for i in range(400)]
    lines[50] = "too,many,fields"
    lines[300] = "few"
    src = tmp_path / "m.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = open_source(src, batch_rows=9)
    bad, total = [], 0
    for piece in source.pieces():
        assert piece.table.num_rows <= 9
        bad += piece.bad
        total += piece.table.num_rows
    assert total == 398
    assert [(b["row"], b["data"]) for b in bad] == [(51, "too,many,fields"), (301, "few")]
    assert bad[0]["reason"] == "malformed CSV row: expected 2 columns, found 3"


def test_the_quote_scan_streams_the_same_as_a_whole_file_pass():
    from embstore.ingest.csv_stream import open_quote_line

    cases = [b'a,b\r\nx,"y""z"\r\n"open,\r\nmore\n', b'a,b\nq"uo"te,1\n"ok"\n"never', b'\xef\xbb\xbf"a,b\n',
             b'a,b\n"x""\n""",1\n', b'a\tb\r"x\r\n', b'a,b\n"closed"""\n']
    for data in cases:
        whole = open_quote_line([data], ",")
        for size in (1, 2, 3, 5):
            chunks = [data[i:i + size] for i in range(0, len(data), size)]
            assert open_quote_line(chunks, ",") == whole, (data, size)
    assert [open_quote_line([d], ",") for d in cases] == [3, 4, 1, None, 2, None]
    assert open_quote_line([b'a\tb\nx\t"y"\t"z'], "\t") == 2 and open_quote_line([b'a\tb\nx\t"y"\t"z'], ",") is None


def test_a_csv_with_only_a_header_has_columns_and_no_rows_and_an_empty_one_is_an_error(tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n")
    source = open_source(tmp_path / "h.csv")
    assert source.columns == ["text", "label"]
    [piece] = list(source.pieces())
    assert piece.table.num_rows == 0 and piece.table.column_names == ["text", "label"]
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match=r"^e\.csv is empty; give a file with a header row"):
        open_source(tmp_path / "e.csv")


def test_globs_are_sorted_read_each_file_once_and_name_what_is_wrong(tmp_path):
    for name in ["b.csv", "a.csv", "sub/c.csv", "sub/deeper/d.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_csv(tmp_path / name, [{"text": name}])
    source = open_source(str(tmp_path / "**" / "*.csv"))
    assert source.name == str(tmp_path / "**" / "*.csv") and source.base_dir == str(tmp_path)
    assert [p.file for p in source.pieces()] == [str(tmp_path / n) for n in ["a.csv", "b.csv", "sub/c.csv",
                                                                              "sub/deeper/d.csv"]]
    listed = open_source([tmp_path / "b.csv", str(tmp_path / "*.csv"), tmp_path / "sub" / ".." / "b.csv"])
    assert listed.files == 2
    assert [p.table.column("text")[0].as_py() for p in listed.pieces()] == ["b.csv", "a.csv"]
    with pytest.raises(InputError, match=r"no file matches .*\*\.parquet; check the folder and the pattern"):
        open_source(str(tmp_path / "*.parquet"))
    write_jsonl(tmp_path / "x.jsonl", [{"text": "j"}])
    with pytest.raises(InputError) as e:
        open_source([tmp_path / "a.csv", tmp_path / "x.jsonl"])
    assert "a.csv is CSV but" in str(e.value) and "x.jsonl is JSONL" in str(e.value)
    with pytest.raises(InputError, match="x.jsonl is JSONL"):
        open_source(tmp_path)  # a folder of tables of two kinds
    with pytest.raises(InputError, match=r"missing\.csv does not exist"):
        open_source([tmp_path / "a.csv", tmp_path / "missing.csv"])


def test_a_folder_of_parquet_with_hive_partitions_has_their_columns(tmp_path):
    for year, month, n in [(2023, 12, 3), (2024, 1, 2), (2024, 2, 4)]:
        part = tmp_path / "t" / f"year={year}" / f"month={month}"
        part.mkdir(parents=True)
        pq.write_table(pa.table({"text": [f"{year}-{month} #{i}" for i in range(n)]}), part / "part-0.parquet")
    (tmp_path / "t" / "_common_metadata").write_bytes(b"not parquet")
    (tmp_path / "t" / "_delta_log").mkdir()
    (tmp_path / "t" / "_delta_log" / "0.json").write_text("{}")
    source = open_source(tmp_path / "t", batch_rows=2)
    assert (source.kind, source.columns, source.rows_hint, source.files) == ("parquet", ["text", "year", "month"], 9, 3)
    table = read_source(tmp_path / "t").table
    assert table.schema.field("year").type == pa.int32()
    assert table.select(["year", "month"]).to_pylist()[3] == {"year": 2024, "month": 1}
    assert max(p.table.num_rows for p in open_source(tmp_path / "t", batch_rows=2).pieces()) == 2


def test_a_parquet_that_is_not_one_is_named(tmp_path):
    (tmp_path / "bad.parquet").write_text("hello")
    with pytest.raises(InputError, match=r"^cannot read bad\.parquet as Parquet: Parquet file size is 5 bytes"):
        open_source(tmp_path / "bad.parquet")


def test_jsonl_types_are_kept_across_pieces_and_files(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}", "score": i} for i in range(10)])
    write_jsonl(tmp_path / "b.jsonl", [{"text": "b0", "score": "high"}, '{"text": ', "[1]", {"text": "b3", "score": 2.5}])
    source = open_source(str(tmp_path / "*.jsonl"), batch_rows=3)
    assert source.columns == ["text", "score"]
    by_file, bad = {}, []
    for piece in source.pieces():
        assert piece.table.num_rows <= 3
        by_file.setdefault(piece.file, []).extend(piece.table.to_pylist())
        bad += piece.bad
    assert [len(v) for v in by_file.values()] == [10, 1]
    assert [b["row"] for b in bad] == [1, 2, 3]
    assert bad[0]["reason"] == "field 'score' holds text here but a number on line 1 of a.jsonl; make each field one type"
    assert bad[1]["reason"].startswith("invalid JSON: ") and bad[2]["reason"] == "not a JSON object"
    assert read_source(str(tmp_path / "*.jsonl")).table.column("score").type == pa.float64()


def test_a_json_array_is_read_whole_and_handed_out_in_pieces(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_rows(20)))
    pieces = list(open_source(tmp_path / "a.json", batch_rows=8).pieces())
    assert [p.table.num_rows for p in pieces] == [8, 8, 4] and [p.first_row for p in pieces] == [1, 9, 17]


def test_an_image_folder_is_walked_as_it_streams(tmp_path):
    for i in range(5):
        make_png(tmp_path / "imgs" / "b" / f"{i}.png", i)
        make_png(tmp_path / "imgs" / "a" / f"{i}.png", i)
    (tmp_path / "imgs" / "a" / "notes.txt").write_text("x")
    (tmp_path / "imgs" / "b" / "labels.csv").write_text("x\n")
    (tmp_path / "imgs" / ".cache").mkdir()
    make_png(tmp_path / "imgs" / ".cache" / "x.png", 1)
    source = open_source(tmp_path / "imgs", batch_rows=3)
    assert (source.kind, source.columns, source.files, source.base_dir) == ("folder", ["path", "folder"], 1,
                                                                            str(tmp_path / "imgs"))
    pieces = source.pieces()
    first = next(pieces)
    assert first.table.to_pylist() == [{"path": f"a/{i}.png", "folder": "a"} for i in range(3)]
    assert source.files < 10  # not listed ahead
    rest = list(pieces)
    assert (source.files, source.ignored_files) == (10, 2)
    assert [p.first_row for p in [first] + rest] == [1, 4, 7, 10]
    assert source.open_file("a/0.png") == (tmp_path / "imgs" / "a" / "0.png").read_bytes()
    assert read_source(tmp_path / "imgs").table.num_rows == 10


def test_memory_urls_read_tables_and_image_folders(memfs):
    fs, root = memfs
    fs.pipe(f"{root}/t/a.csv", b"text,n\nx,1\ny,2\n")
    fs.pipe(f"{root}/t/b.csv", b"text,n\nz,3\n")
    source = open_source(f"memory://{root}/t/*.csv")
    assert source.kind == "csv" and source.name == f"memory://{root}/t/*.csv"
    assert [(p.file, p.table.num_rows) for p in source.pieces()] == [(f"memory://{root}/t/a.csv", 2),
                                                                      (f"memory://{root}/t/b.csv", 1)]
    with fs.open(f"{root}/p/year=2024/part.parquet", "wb") as f:
        pq.write_table(pa.table({"text": ["p"]}), f)
    assert read_source(f"memory://{root}/p").table.to_pylist() == [{"text": "p", "year": 2024}]
    fs.pipe(f"{root}/i/cats/c.png", b"png bytes")
    fs.pipe(f"{root}/i/.hidden.png", b"no")
    fs.pipe(f"{root}/i/read.me", b"no")
    images = open_source(f"memory://{root}/i")
    [piece] = list(images.pieces())
    assert piece.table.to_pylist() == [{"path": f"memory://{root}/i/cats/c.png", "folder": "cats"}]
    assert images.ignored_files == 1 and images.base_dir == f"memory://{root}/i"
    assert images.open_file(piece.table.column("path")[0].as_py()) == b"png bytes"
    assert images.open_file("cats/c.png") == b"png bytes"
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"memory://{root}/nothing.csv")


def test_file_urls_are_local_paths(tmp_path):
    src = write_csv(tmp_path / "f.csv", [{"text": "x"}])
    source = open_source(src.as_uri())
    assert source.name == str(src) and [p.file for p in source.pieces()] == [str(src)]


@pytest.mark.parametrize("protocol, package", [("s3", "s3fs"), ("gs", "gcsfs"), ("abfs", "adlfs")])
def test_a_protocol_whose_package_is_missing_is_one_line(protocol, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(InputError) as e:
        open_source(f"{protocol}://bucket/data/*.parquet")
    assert str(e.value) == f"reading {protocol}:// needs the {package} package: pip install {package}"


def test_unknown_protocols_types_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match=r"unknown protocol nope://"):
        open_source("nope://x/y.csv")
    make_png(tmp_path / "one.png", 1)
    with pytest.raises(InputError, match=r"^one\.png is an image; give the folder"):
        open_source(tmp_path / "one.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"holds no image files .* and no tables"):
        open_source(tmp_path / "empty")
    with pytest.raises(InputError, match="give it alone"):
        open_source([tmp_path, write_csv(tmp_path / "t.csv", [{"text": "x"}])])
    with pytest.raises(InputError, match="batch_rows must be a positive"):
        open_source(tmp_path, batch_rows=0)


def test_pieces_stream_once(tmp_path):
    source = open_source(write_csv(tmp_path / "a.csv", [{"text": "x"}]))
    list(source.pieces())
    with pytest.raises(RuntimeError, match="open the source again"):
        source.pieces()

"""CSV/TSV reader: a quote that opens and never closes is a one-line error naming its line, not one value holding the
rest of the file; quoted values that span lines, closed, still read (in the middle and in the last row)."""
from __future__ import annotations

import pytest

from conftest import HASH, write_csv
from embstore import InputError, Store
from embstore.ingest.readers import read_source

QUESTIONS = [f"Question number {i} about a place" for i in range(27)]


def _bad_quote_file(path, delimiter=","):
    """30 lines: a header, one good row, then line 3 opens a quote that nothing closes, then 27 good rows."""
    lines = [f"text{delimiter}label", f"Where is Paris{delimiter}LOC", f'"What is a bad quote{delimiter}LOC']
    lines += [f"{q}{delimiter}DESC" for q in QUESTIONS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _assert_nothing_committed(store: Store) -> None:
    assert "c" not in store.info()["collections"]


@pytest.mark.parametrize("name, delimiter", [("bad.csv", ","), ("bad.tsv", "\t")])
def test_a_quote_never_closed_is_an_input_error_naming_its_line(tmp_path, name, delimiter):
    src = _bad_quote_file(tmp_path / name, delimiter)
    store = Store.open(tmp_path / "s")
    with pytest.raises(InputError) as e:
        store.ingest(src, "c", encoder=HASH)
    message = str(e.value)
    assert "\n" not in message
    assert f"{name}: a quote opened on line 3 is never closed" in message and "close or remove that quote" in message
    _assert_nothing_committed(store)


def test_a_quote_never_closed_in_the_last_column_is_an_input_error(tmp_path):
    """The open quote in the last column leaves a row with the right number of fields, which pyarrow accepts."""
    src = tmp_path / "last.csv"
    src.write_text("text,label\nWhere is Paris,LOC\nWhat is a bad quote,\"LOC\n"
                   + "".join(f"{q},DESC\n" for q in QUESTIONS), encoding="utf-8")
    with pytest.raises(InputError, match=r"^last\.csv: a quote opened on line 3 is never closed"):
        read_source(src)
    store = Store.open(tmp_path / "s")
    with pytest.raises(InputError, match="line 3"):
        store.ingest(src, "c", encoder=HASH)
    _assert_nothing_committed(store)


def test_a_quote_never_closed_after_a_malformed_row_is_still_named(tmp_path):
    """An earlier malformed row sends the file through the quarantining reader: the open quote is caught there too."""
    src = tmp_path / "both.csv"
    src.write_text("text,label\ntoo,many,fields\ngood row,A\n\"never closed,B\nmore,C\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"^both\.csv: a quote opened on line 4 is never closed"):
        read_source(src)


@pytest.mark.parametrize("where", ["middle", "last"])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_closed_quoted_values_spanning_lines_still_read(tmp_path, where, delimiter):
    rows = [{"text": q, "label": "DESC"} for q in QUESTIONS[:6]]
    at = 2 if where == "middle" else len(rows) - 1
    rows[at] = {"text": 'a first line\nsays "hi", then\r\na last line', "label": "multi\nline label"}
    src = write_csv(tmp_path / ("t.csv" if delimiter == "," else "t.tsv"), rows, delimiter=delimiter)
    read = read_source(src)
    assert read.table.to_pylist() == rows and read.bad_rows == []
    store = Store.open(tmp_path / "s")
    r = store.ingest(src, "c", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (6, 6, 0)
    assert store.sql("SELECT label FROM c WHERE text LIKE 'a first line%'").fetchall() == [("multi\nline label",)]


def test_a_last_value_that_ends_like_an_open_quote_but_is_closed_still_reads(tmp_path):
    """The file ends '"' + the last value, as an open quote would leave it, yet the quote closes: the scan tells."""
    src = tmp_path / "tricky.csv"
    src.write_text('text,label\nplain,"\n"\n', encoding="utf-8")  # the label is a line break, quoted and closed
    assert read_source(src).table.to_pylist() == [{"text": "plain", "label": "\n"}]


def test_a_jsonl_row_whose_field_has_another_type_is_quarantined_naming_field_and_line(tmp_path):
    from embstore import Store

    from conftest import HASH, quarantine_lines, write_jsonl

    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": "x", "score": 1},
                                             {"text": "b", "label": 3, "score": 2.5},
                                             {"text": "c", "label": None, "score": 3},
                                             {"text": "d", "label": "y", "score": True}])
    store = Store.open(tmp_path / "s")
    r = store.ingest(path, "j", encoder=HASH)
    assert (r.read, r.added, r.quarantined) == (4, 2, 2)
    reasons = {x["line"]: x["reason"] for x in quarantine_lines(store.root, r.quarantine_file)}
    assert reasons == {2: "field 'label' holds a number here but text on line 1; make each field one type",
                       4: "field 'score' holds a boolean here but a number on line 1; make each field one type"}
    assert store.sql("SELECT text, score FROM j ORDER BY text").fetchall() == [("a", 1.0), ("c", 3.0)]

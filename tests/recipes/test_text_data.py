"""Text --data CSVs as users save them (Excel's BOM, other encodings, short rows), and the class names."""

import json

import pytest

from multimix_recipes.config import resolve
from multimix_recipes.text import train as text


def load(path, **keys):
    return text.load_data(resolve("text", None, {"data": str(path), "val_size": 2, "device": "cpu", **keys}))


def rows(labels):
    return "".join(f"review number {i},{label}\n" for i, label in enumerate(labels))


def test_excel_csv_utf8_with_a_bom_reads(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("text,label\r\n" + rows(["pos", "neg"] * 10).replace("\n", "\r\n")).encode())
    train, val, test, classes = load(path)
    assert classes == ["neg", "pos"] and len(train) + len(val) + len(test) == 20
    assert {t for t, _ in train + val + test} == {f"review number {i}" for i in range(20)}


def test_header_names_are_read_without_spaces_and_in_any_order(tmp_path):
    path = tmp_path / "swapped.csv"
    path.write_text("label, text\n" + "".join(f"{i % 2},sentence {i}\n" for i in range(20)))
    train, val, test, classes = load(path)
    assert classes == ["0", "1"] and all(t.startswith("sentence ") for t, _ in train + val + test)


def test_numeric_labels_are_ordered_as_numbers(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("text,label\n" + rows(["10", "2", "1", "-3"] * 5))
    train, val, test, classes = load(path)
    assert classes == ["-3", "1", "2", "10"]  # not "-3", "1", "10", "2"
    label_of = {f"review number {i}": ["10", "2", "1", "-3"][i % 4] for i in range(20)}
    assert all(classes[k] == label_of[t] for t, k in train + val + test)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("text,label\n" + rows(["10", "2", "x"] * 5))
    assert load(mixed)[3] == ["10", "2", "x"]  # names as strings when any label is not a number


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"text,label\na,pos\nb\nc,neg\n", r"bad.csv line 3: the row has no label; give every row one"),
        (b"text,label\na,pos\nb,\nc,neg\n", r"bad.csv line 3: the row has no label"),
        (b'text,label\n"a\nlong one",pos\nb,neg\nc,pos,extra\n',
         r"bad.csv line 5: 3 fields, the header has 2 \(text, label\); quote a text that holds commas"),
        ("text,label\nça va,pos\nnon,neg\n".encode("latin-1"), r"bad.csv line 2: not UTF-8 \(byte 0xe7 at offset 11\); "
                                                               r"save the CSV as UTF-8 \(in Excel: CSV UTF-8\)"),
        (b"sentence,y\na,1\n", r"bad.csv line 1: the header must name the columns text,label; got \['sentence', 'y'\]"),
        (b"", r"bad.csv is empty; a CSV needs a header line text,label"),
        (b"text,label\n\n\n", r"bad.csv has no rows under its header text,label"),
        (b"text,label\na,pos\nb,pos\n", r"bad.csv holds 1 class\(es\) \['pos'\]; a classifier needs at least two"),
        (b'text,label\n"a,pos\n', r"bad.csv line 2: not a valid CSV row \(unexpected end of data\); close each quoted"),
        (b'text,label\n"a"b,pos\n', r"bad.csv line 2: not a valid CSV row \(',' expected after '\"'\)"),
    ],
)  # fmt: skip
def test_bad_csvs_name_the_file_and_line(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load(path)


def test_the_exported_model_and_metrics_name_the_classes(tmp_path):
    """The fine-tuned model/ maps its logits to the CSV's labels (not LABEL_0, LABEL_1); metrics.json says it."""
    from transformers import AutoConfig

    path = tmp_path / "numbers.csv"
    path.write_text("text,label\n" + "".join(f"film {i},{[10, 2, 1][i % 3]}\n" for i in range(30)))
    task = text.build(resolve("text", None, {"data": str(path), "val_size": 4, "device": "cpu", "method": "erm"}))
    assert task.class_names == ["1", "2", "10"]
    (tmp_path / "metrics.json").write_text(json.dumps({"method": "erm"}))  # the engine writes it before the model
    task.save(tmp_path / "model")
    saved = AutoConfig.from_pretrained(tmp_path / "model")
    assert saved.id2label == {0: "1", 1: "2", 2: "10"} and saved.label2id == {"1": 0, "2": 1, "10": 2}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"method": "erm", "id2label": {"0": "1", "1": "2", "2": "10"}}


def test_max_length_beyond_the_model_is_refused(tmp_path):
    config = resolve("text", None, {"max_length": 4096, "train_limit": 40, "test_limit": 10, "val_size": 4})
    with pytest.raises(ValueError, match=r"max_length must be <= 512 for .* \(its longest input\), got 4096"):
        text.build(config)

"""One input-format rule for labeling and training (issue 20): a file name's format and compression
are read by transforms.records.file_format for both, so the pipeline's reader (--input) and
training's load_task_data (--train, --eval) accept the same names, refuse the same names with the
same list of accepted suffixes, and treat gzip content the same way whatever the name says. What
each reads is checked against polars reading the uncompressed file."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib

import polars as pl
import pytest
import zstandard

from models.training import TrainingDataError
from models.training.data import load_task_data
from pipelines.beam_steps import ReadRecordsFn
from transforms.inputs import list_inputs
from transforms.records import ACCEPTED_SUFFIXES, COMPRESSION_SUFFIXES, FORMAT_SUFFIXES, FieldMap, decode_dead_letter

ROWS = [{"id": f"r{i}", "text": f"plain words number {i} about the vote", "label": ["negative", "positive"][i % 2]}
        for i in range(7)]

COMPRESSORS = {"gzip": gzip.compress, "bzip2": bz2.compress, "zstd": zstandard.ZstdCompressor().compress,
               "deflate": zlib.compress, "lzma": lzma.compress}


def encoded(fmt: str) -> bytes:
    frame, out = pl.DataFrame(ROWS), io.BytesIO()
    {"jsonl": frame.write_ndjson, "csv": frame.write_csv, "parquet": frame.write_parquet}[fmt](out)
    return out.getvalue()


def reference_texts(fmt: str) -> list[str]:
    source = io.BytesIO(encoded(fmt))
    frame = {"jsonl": pl.read_ndjson, "csv": pl.read_csv, "parquet": pl.read_parquet}[fmt](source)
    return frame.get_column("text").to_list()


def labeling_texts(path: str) -> tuple[list[str], list[dict]]:
    """What the pipeline's reader makes of the file --input names: (texts, dead letters)."""
    (listed,), not_read = list_inputs(path)
    assert not_read == []
    texts, letters = [], []
    for item in ReadRecordsFn(FieldMap(), {}).process(listed):
        if isinstance(item, dict):
            texts.append(item["text"])
        else:
            letters.append(decode_dead_letter(item.value))
    return texts, letters


ACCEPTED = [(suffix + compressed, fmt, compression)
            for suffix, fmt in FORMAT_SUFFIXES.items()
            for compressed, compression in [("", None)] + ([] if fmt == "parquet" else list(COMPRESSION_SUFFIXES.items()))]


def test_the_names_of_the_issue_are_among_those_both_sides_read():
    # Before the one rule, labeling refused posts.pq and training refused data.jsonl.zst.
    assert {".pq", ".jsonl.zst", ".jsonl.gz", ".csv.bz2", ".ndjson.xz", ".parquet"} <= {name for name, _, _ in ACCEPTED}


@pytest.mark.parametrize("suffix,fmt,compression", ACCEPTED, ids=[name for name, _, _ in ACCEPTED])
def test_labeling_and_training_read_the_same_files_as_polars(tmp_path, suffix, fmt, compression):
    path = tmp_path / f"posts{suffix.upper() if suffix.endswith('.gz') else suffix}"  # names are case-blind
    data = encoded(fmt)
    path.write_bytes(COMPRESSORS[compression](data) if compression else data)
    expected = reference_texts(fmt)
    assert len(expected) == len(ROWS)
    trained, _ = load_task_data("sentiment", str(path))
    assert trained.texts == expected
    texts, letters = labeling_texts(str(path))
    assert (texts, letters) == (expected, [])


REFUSED = ["posts.txt", "posts", "posts.jsonl.zip", "posts.parquet.gz", "posts.pq.zst", "posts.gz", "posts.tsv"]


@pytest.mark.parametrize("name", REFUSED)
def test_labeling_and_training_refuse_the_same_names_saying_what_is_accepted(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(encoded("parquet" if ".p" in name else "jsonl"))
    with pytest.raises(TrainingDataError) as training:
        load_task_data("sentiment", str(path))
    with pytest.raises(ValueError) as labeling:
        list_inputs(str(path))
    for message in (str(training.value), str(labeling.value)):
        assert ACCEPTED_SUFFIXES in message and ".pq" in message and ".zst" in message
    assert str(training.value) == str(labeling.value)


@pytest.mark.parametrize("name", ["posts.jsonl", "posts.csv", "posts.ndjson"])
def test_gzip_content_under_a_plain_name_is_read_as_gzip_by_both(tmp_path, name):
    fmt = FORMAT_SUFFIXES[os.path.splitext(name)[1]]
    path = tmp_path / name
    path.write_bytes(gzip.compress(encoded(fmt)))
    expected = reference_texts(fmt)
    assert load_task_data("sentiment", str(path))[0].texts == expected
    assert labeling_texts(str(path)) == (expected, [])


def test_a_gz_that_is_not_gzip_is_refused_by_both(tmp_path):
    path = tmp_path / "posts.jsonl.gz"
    path.write_bytes(encoded("jsonl"))
    with pytest.raises(TrainingDataError, match="named .gz but not gzip"):
        load_task_data("sentiment", str(path))
    texts, letters = labeling_texts(str(path))
    assert texts == [] and len(letters) == 1 and "named .gz but not gzip" in letters[0]["reason"]


@pytest.mark.parametrize("suffix", list(COMPRESSION_SUFFIXES))
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_compressed_file_is_refused_by_training_and_a_dead_letter_in_labeling(tmp_path, suffix, damage):
    path = tmp_path / f"posts.jsonl{suffix}"
    whole = COMPRESSORS[COMPRESSION_SUFFIXES[suffix]](encoded("jsonl") * 200)
    half = len(whole) // 2
    path.write_bytes(whole[:half] if damage == "truncated" else whole[:half] + bytes(255 - b for b in whole[half:]))
    with pytest.raises(TrainingDataError, match="cannot be"):
        load_task_data("sentiment", str(path))
    texts, letters = labeling_texts(str(path))
    assert len(texts) < 200 * len(ROWS) and [l["position"] for l in letters][-1:] == [None]
    assert "file unreadable after record" in letters[-1]["reason"]

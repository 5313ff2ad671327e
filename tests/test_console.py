"""What the labeling job prints: progress lines, the end-of-run summary, --skip-if-done saying why,
and no Beam/transformers noise on the terminal by default (a subprocess, as a user runs it)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import console
from pipelines.console import progress_line
from pipelines.labeling import DONE, SKIPPED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10**7), st.floats(0.5, 1e5), st.integers(1, 10**7), st.integers(2, 8))
def test_progress_line_reports_rate_and_time_left_and_a_worker_process_only_its_own_count(done, seconds, expected,
                                                                                          workers):
    line = progress_line(done, seconds, expected=expected)
    assert f"{done:,} posts labeled" in line and f"({done / seconds:,.1f} posts/s)" in line
    if seconds >= console.MIN_PACE_SECONDS:
        left = max(expected - done, 0) / (done / seconds)
        assert line.endswith(f", about {left:.0f} s left of ~{expected:,}")
    else:
        assert "left" not in line
    assert "left" not in progress_line(done, seconds)  # no input size known
    # one of several processes knows its own count, not its share of the input: no time left
    mine = progress_line(done, seconds, expected=expected, workers=workers, pid=4242)
    assert mine == f"one of {workers} worker processes (pid 4242): {progress_line(done, seconds)}"


def test_no_time_left_until_the_pace_is_measured_over_enough_posts_and_seconds():
    from pipelines.console import MIN_PACE_SECONDS, time_left

    # the first guess: 10 posts in the first seconds said "about 1975 s left of ~3,000" (it took 103 s)
    assert time_left(3000, 10, 10, 6.5, min_posts=1024) is None
    assert time_left(3000, 2000, 1990, MIN_PACE_SECONDS - 1, min_posts=1024) is None  # posts enough, seconds not
    assert time_left(3000, 900, 890, 60, min_posts=1024) is None  # seconds enough, not a whole batch yet
    # from then on: the rest at the pace since the first batch finished (model loading left out)
    assert time_left(3000, 1100, 1024, 32, min_posts=1024) == pytest.approx((3000 - 1100) / (1024 / 32))
    assert time_left(3000, 3200, 3100, 90, min_posts=1024) == 0  # the estimate of the size was low
    assert time_left(None, 3000, 3000, 90, min_posts=1024) is None
    line = progress_line(1100, 40, pace=(1024, 32), expected=3000, min_posts=1024)
    assert line == "1,100 posts labeled in 40 s (32.0 posts/s since labeling began), about 59 s left of ~3,000"
    assert progress_line(10, 11, pace=(10, 6.5), expected=3000, min_posts=1024) == \
        "10 posts labeled in 11 s (1.5 posts/s since labeling began)"


def test_summary_lines_say_what_the_run_did():
    manifest = {"records_read": 10, "rows_written": 8, "dead_lettered": 2,
                "dead_lettered_by_reason": {"invalid JSON": 2}, "languages": {"en": 6, "zh": 2},
                "routing": {"stars": "zh"}, "by_classifier": {"stars": {"labeled": 2, "skipped_language": 5}},
                "empty_text_rows": 1, "output": "out/x"}
    lines = console.summary_lines(manifest, 4.0, ["stars: 5 50.0% · 1 50.0%"])
    text = "\n".join(lines)
    assert "10 posts read, 8 rows written, 2 dead-lettered in 4 s (2.5 posts/s)" in text
    assert "dead letters: 2 invalid JSON" in text
    assert "languages: en 75.0% · zh 25.0%" in text
    assert "stars [zh]: 2 posts labeled, 5 skipped by language" in text
    # the rows no classifier ran on are said too: 2 + 5 + 1 = the 8 rows written
    assert "  1 row with an empty text after cleaning: no classifier runs on it" in lines
    assert "empty text" not in "\n".join(console.summary_lines({**manifest, "empty_text_rows": 0}, 4.0, []))
    assert lines[-2:] == ["stars: 5 50.0% · 1 50.0%", "output: out/x"]
    assert console.label_line("x", [("a", 0.1), ("b", 0.9)]) == "x: b 90.0% · a 10.0%"


def test_help_prints_no_beam_warning_and_a_module_usage():
    result = subprocess.run([sys.executable, "-m", "pipelines.label_corpus", "--help"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m pipelines.label_corpus")
    assert "apitools" not in result.stderr and "WARNING" not in result.stderr


def test_skip_if_done_says_it_skipped(tmp_path, tiny_checkpoints, caplog):
    from pipelines.label_corpus import run

    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "a fine day for a vote"}\n', encoding="utf-8")
    argv = ["--input", str(posts), "--output", str(tmp_path / "out"), "--only", "sentiment",
            "--model", f"sentiment={tiny_checkpoints['sentiment']}", "--device", "cpu", "--skip-if-done"]
    with caplog.at_level(logging.INFO, logger="pipelines.label_corpus"):
        assert run(argv).status == DONE
        assert "no complete run" in caplog.text
        caplog.clear()
        assert run(argv).status == SKIPPED
        assert "skipped:" in caplog.text and "already complete" in caplog.text
        caplog.clear()
        assert run([*argv, "--all-languages"]).status == DONE  # other routing: labeled again
        assert "other language routing" in caplog.text


def test_the_progress_estimate_reads_local_text_inputs_only_within_its_byte_budget_in_all(tmp_path):
    from pipelines.labeling import expected_records

    paths = []
    for i in range(3):
        path = tmp_path / f"part{i}.jsonl"
        path.write_text('{"id": "a", "text": "x"}\n' * 100)
        paths.append(str(path))
    one_file = os.path.getsize(paths[0])
    assert expected_records(paths, limit_bytes=3 * one_file) == 300
    assert expected_records(paths, limit_bytes=2 * one_file) is None  # each file fits, all three do not


def test_the_usage_line_names_the_command_that_was_typed(monkeypatch, capsys):
    import pytest

    from pipelines import label_corpus

    for argv0, usage in (("/venv/bin/label-corpus", "usage: label-corpus"),
                         ("/repo/pipelines/label_corpus.py", "usage: python -m pipelines.label_corpus")):
        monkeypatch.setattr(sys, "argv", [argv0])
        with pytest.raises(SystemExit):
            label_corpus.parse_args(["--help"])
        assert capsys.readouterr().out.startswith(usage)


def test_an_input_language_field_is_pointed_out_when_lang_field_is_not_given(tmp_path):
    from pipelines.labeling import lang_field_hint

    coded = tmp_path / "coded.jsonl"
    coded.write_text("".join(f'{{"id": "{i}", "text": "hi", "lang": "{code}"}}\n'
                             for i, code in enumerate(["en", "zh-CN", "EN", "ms"])))
    hint = lang_field_hint(str(coded))
    assert "--lang-field lang would take each post's language from it" in hint
    assert "only the classifiers whose script fits its text run on" in hint  # as routing does (README)
    csv_file = tmp_path / "posts.csv"
    csv_file.write_text("id,text,language\n1,hello,en\n2,你好,zh\n")
    assert "--lang-field language" in lang_field_hint(str(csv_file))
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "1", "text": "hi", "lang": 3}\n{"id": "2", "text": "yo", "lang": ""}\n{"id": "3", "text": "x"}\n')
    assert lang_field_hint(str(other)) is None  # no usable codes: nothing to point at


def test_the_demo_table_aligns_posts_of_wide_characters():
    import unicodedata

    from pipelines.demo import SAMPLE_COLUMNS, pad_to_width, sample_text

    def columns(text: str) -> int:  # East Asian Width (Unicode's UAX 11): wide and fullwidth take two
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    texts = ["这家酒店房间干净，服务特别热情，下次还会再来。" * 3, "送餐很快", "The election results are in " * 4, "ok"]
    cells = [pad_to_width(sample_text(text), SAMPLE_COLUMNS) for text in texts]
    assert {columns(cell) for cell in cells} == {SAMPLE_COLUMNS}
    assert cells[0].rstrip().endswith("…'") and cells[1].rstrip() == "'送餐很快'"

"""What the labeling job prints: progress lines, the end-of-run summary, --skip-if-done saying why,
and no Beam/transformers noise on the terminal by default (a subprocess, as a user runs it)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import console
from pipelines.console import progress_line
from pipelines.labeling import DONE, SKIPPED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10**7), st.floats(0.5, 1e5), st.integers(1, 10**7), st.integers(1, 8))
def test_progress_line_reports_rate_and_time_left(done, seconds, expected, workers):
    line = progress_line(done, seconds, expected, workers)
    assert f"{done:,} posts labeled" in line and f"({done / seconds:,.1f} posts/s)" in line
    left = max(expected - done * workers, 0) / (done / seconds * workers)
    assert f"about {left:.0f} s left of ~{expected:,}" in line
    assert "s left" not in progress_line(done, seconds, None)


def test_summary_lines_say_what_the_run_did():
    manifest = {"records_read": 10, "rows_written": 8, "dead_lettered": 2,
                "dead_lettered_by_reason": {"invalid JSON": 2}, "languages": {"en": 6, "zh": 2},
                "routing": {"stars": "zh"}, "by_classifier": {"stars": {"labeled": 2, "skipped_language": 6}},
                "output": "out/x"}
    lines = console.summary_lines(manifest, 4.0, ["stars: 5 50.0% · 1 50.0%"])
    text = "\n".join(lines)
    assert "10 posts read, 8 rows written, 2 dead-lettered in 4 s (2.5 posts/s)" in text
    assert "dead letters: 2 invalid JSON" in text
    assert "languages: en 75.0% · zh 25.0%" in text
    assert "stars [zh]: 2 posts labeled, 6 skipped by language" in text
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
    assert "--lang-field lang would take each post's language from it" in lang_field_hint(str(coded))
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

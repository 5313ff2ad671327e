"""Classifiers of the users' own, given only as `--model NAME=CHECKPOINT`: a 3-class single-label
`stance` and a 3-label multi-label `toxicity` (tiny checkpoints built here), labeled beside the four.
Their columns are compared with a plain transformers forward pass; names and collisions are refused
before any data is read; routing comes from --languages or the checkpoint; --skip-if-done reruns only
the classifier whose checkpoint changed."""
from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.heads import column_suffix
from models.tiny_checkpoints import build_tiny_checkpoint
from pipelines.label_corpus import run
from pipelines.labeling import SKIPPED, UsageError
from transforms.cleaning import clean_text

POSTS = [{"id": "en0", "text": "the government should spend more money on schools", "lang": "en"},
         {"id": "en1", "text": "what a terrible awful day @user http://t.co/x", "lang": "en"},
         {"id": "en2", "text": "I love this so much, great service 😂", "lang": "en"},
         {"id": "zh0", "text": "酒店房间很干净，服务也很周到", "lang": "zh"},
         {"id": "empty", "text": "http://t.co/only-a-link", "lang": "en"}]
STANCE = ["against", "neutral", "favor"]
TOXICITY = ["insult", "threat", "Obscene Language"]
THRESHOLDS = {"insult": 0.45, "threat": 0.5, "Obscene Language": 0.55}


@pytest.fixture(scope="module")
def own_checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("own")
    stance = build_tiny_checkpoint("stance", root, seed=11, emotion_labels=STANCE)
    toxicity = build_tiny_checkpoint("toxicity", root, seed=12, emotion_labels=TOXICITY,
                                     problem_type="multi_label_classification")
    config = json.loads((toxicity / "config.json").read_text())
    config["thresholds"] = THRESHOLDS
    (toxicity / "config.json").write_text(json.dumps(config))
    return {"stance": str(stance), "toxicity": str(toxicity)}


def write_posts(path: Path, posts=POSTS) -> str:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), encoding="utf-8")
    return str(path)


def read_rows(out: Path) -> tuple[pa.Table, dict[str, dict]]:
    table = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "labels-*.parquet")))])
    return table, {row["id"]: row for row in table.to_pylist()}


def reference(checkpoint: str, text: str, multi_label: bool) -> np.ndarray:
    """Probabilities of a plain transformers forward pass."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(text, return_tensors="pt", truncation=True)).logits[0]
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).numpy()


def test_two_classifiers_of_ones_own_are_labeled_beside_the_four(tmp_path, tiny_models_file, own_checkpoints):
    out = tmp_path / "out"
    run(["--input", write_posts(tmp_path / "posts.jsonl"), "--output", str(out), "--models", tiny_models_file,
         "--model", f"stance={own_checkpoints['stance']}", "--model", f"toxicity={own_checkpoints['toxicity']}",
         "--lang-field", "lang", "--device", "cpu", "--cpu-backend", "torch"])  # compared with a plain forward pass
    table, rows = read_rows(out)
    schema = table.schema
    assert schema.field("stance").type == pa.string() and schema.field("stance_score").type == pa.float32()
    assert schema.field("toxicity").type == pa.list_(pa.string())
    score_columns = [f"toxicity_{column_suffix(label)}" for label in TOXICITY]
    assert score_columns == ["toxicity_insult", "toxicity_threat", "toxicity_obscene_language"]
    assert all(schema.field(c).type == pa.float32() for c in score_columns)
    assert {"politics_economy", "stars", "sentiment", "emotions"} <= set(table.column_names)  # the four still run

    labeled = ["en0", "en1", "en2", "zh0"]  # every language: a generic classifier's default routing
    for row_id in labeled:
        text = clean_text(next(p["text"] for p in POSTS if p["id"] == row_id))
        stance = reference(own_checkpoints["stance"], text, multi_label=False)
        assert rows[row_id]["stance"] == STANCE[int(stance.argmax())]
        assert rows[row_id]["stance_score"] == pytest.approx(float(stance.max()), abs=1e-5)
        toxicity = reference(own_checkpoints["toxicity"], text, multi_label=True)
        assert [rows[row_id][c] for c in score_columns] == pytest.approx(toxicity.tolist(), abs=1e-5)
        assert rows[row_id]["toxicity"] == [label for label, p in zip(TOXICITY, toxicity) if p >= THRESHOLDS[label]]
    assert rows["empty"]["stance"] is None and rows["empty"]["toxicity"] is None  # no text left after cleaning

    manifest = json.loads((out / "_manifest.json").read_text())
    for name in ("stance", "toxicity"):
        assert manifest["inferences"][name] == len(labeled)
        assert manifest["by_classifier"][name] == {"labeled": len(labeled), "skipped_language": 0}
        assert manifest["checkpoints"][name]["checkpoint"] == own_checkpoints[name]
        assert manifest["routing"][name] == "all languages"
    checkpoints = json.loads(schema.metadata[b"label_corpus.checkpoints"])
    assert {"stance", "toxicity"} <= set(checkpoints)

    # the summary's label lines (pyarrow) and the report (polars): one of each per classifier, figures from the rows
    from pipelines.console import label_lines
    from pipelines.report import run as report

    lines = {line.split(":")[0].strip(): line for line in label_lines(str(out))}
    assert set(lines) == {"politics", "stars", "sentiment", "emotion", "stance", "toxicity"}
    stance_counts = {label: sum(rows[r]["stance"] == label for r in labeled) for label in STANCE}
    from pipelines.console import label_line

    assert lines["stance"] == label_line("stance", [(label, n / len(labeled)) for label, n in stance_counts.items() if n])
    written = report([str(out)], out=__import__("io").StringIO())
    folder = out / "_report"
    markdown = (folder / "report.md").read_text()
    for name in ("stance", "toxicity"):
        assert f"{name}_labels.csv" in {p.name for p in folder.iterdir()} and (folder / f"{name}_labels.png").stat().st_size
        assert f"`{name}`" in markdown or name in markdown
    import polars as pl

    stance_table = pl.read_csv(folder / "stance_labels.csv")
    assert dict(zip(*stance_table.select(stance_table.columns[:2]).to_dict(as_series=False).values())) == {
        label: count for label, count in stance_counts.items() if count}
    toxicity_table = pl.read_csv(folder / "toxicity_labels.csv")
    carried = {label: sum(label in (rows[r]["toxicity"] or []) for r in labeled) for label in TOXICITY}
    # a label no row carries is known only by its score column's suffix (as emotion's)
    carried = {label if n else column_suffix(label): n for label, n in carried.items()}
    assert {label: count for label, count in zip(*toxicity_table.select(toxicity_table.columns[:2])
                                                 .to_dict(as_series=False).values())} == carried
    assert written


@pytest.mark.parametrize("flag, problem", [
    ("Toxicity=CKPT", "not a valid column prefix"),
    ("tox-icity=CKPT", "not a valid column prefix"),
    ("9lives=CKPT", "not a valid column prefix"),
    ("=CKPT", "expected NAME=CHECKPOINT"),
    ("emotion_x=CKPT", "starts with 'emotion_'"),  # its columns would read as emotion labels
])
def test_a_name_that_is_no_column_prefix_is_refused_before_anything_is_read(tmp_path, flag, problem):
    missing_input = str(tmp_path / "never-read-*.jsonl")
    with pytest.raises(UsageError, match=problem):
        run(["--input", missing_input, "--output", str(tmp_path / "out"), "--model", flag.replace("CKPT", "x/y")])


@pytest.mark.parametrize("name, column", [("emotions", "emotions"), ("text", "text"), ("clean_text", "clean_text"),
                                          ("stars", None)])
def test_columns_that_would_collide_are_refused_before_any_data_is_read(tmp_path, tiny_models_file, own_checkpoints,
                                                                         name, column):
    out = tmp_path / "out"
    argv = ["--input", write_posts(tmp_path / "posts.jsonl"), "--output", str(out), "--models", tiny_models_file,
            "--model", f"{name}={own_checkpoints['stance']}", "--lang-field", "lang", "--device", "cpu"]
    if column is None:  # one of the four's names: that classifier's checkpoint must fit it
        from models.checkpoints import CheckpointError

        with pytest.raises(CheckpointError, match="classifier 'stars'"):
            run(argv)
    else:
        with pytest.raises(UsageError, match=f"'{column}' \\(.*classifier '{name}'"):
            run(argv)
    assert not out.exists() or not list(out.glob("labels-*.parquet"))


def test_a_generic_classifier_is_routed_by_its_checkpoint_or_the_command_line(tmp_path, own_checkpoints):
    checkpoint = Path(own_checkpoints["stance"])
    zh_only = tmp_path / "stance_zh"
    zh_only.mkdir()
    for item in checkpoint.iterdir():
        (zh_only / item.name).write_bytes(item.read_bytes())
    config = json.loads((zh_only / "config.json").read_text())
    config["label_corpus_languages"] = ["zh"]
    (zh_only / "config.json").write_text(json.dumps(config))
    posts = write_posts(tmp_path / "posts.jsonl")

    out = tmp_path / "by_checkpoint"
    run(["--input", posts, "--output", str(out), "--model", f"stance={zh_only}", "--only", "stance",
         "--lang-field", "lang", "--device", "cpu"])
    table, rows = read_rows(out)
    assert [c for c in table.column_names if c.startswith(("politics", "stars", "sentiment", "emotion"))] == []
    assert {r for r, row in rows.items() if row["stance"] is not None} == {"zh0"}
    assert json.loads((out / "_manifest.json").read_text())["by_classifier"]["stance"] == {
        "labeled": 1, "skipped_language": 3}

    out = tmp_path / "by_flag"
    run(["--input", posts, "--output", str(out), "--model", f"stance={zh_only}", "--only", "stance",
         "--languages", "stance=en", "--lang-field", "lang", "--device", "cpu"])
    _, rows = read_rows(out)
    assert {r for r, row in rows.items() if row["stance"] is not None} == {"en0", "en1", "en2"}

    with pytest.raises(UsageError, match="--only names classifier"):
        run(["--input", posts, "--output", str(tmp_path / "x"), "--only", "stance"])


def test_skip_if_done_reruns_only_the_generic_classifier_whose_checkpoint_changed(tmp_path, own_checkpoints):
    posts = write_posts(tmp_path / "posts.jsonl")
    out = tmp_path / "out"
    argv = ["--input", posts, "--output", str(out), "--model", f"stance={own_checkpoints['stance']}",
            "--only", "stance,toxicity", "--lang-field", "lang", "--device", "cpu", "--skip-if-done",
            "--cpu-backend", "torch"]
    run(argv + ["--model", f"toxicity={own_checkpoints['toxicity']}"])
    _, first = read_rows(out)
    assert run(argv + ["--model", f"toxicity={own_checkpoints['toxicity']}"]).status == SKIPPED  # nothing to do

    retrained = build_tiny_checkpoint("toxicity", tmp_path / "retrained", seed=99, emotion_labels=TOXICITY,
                                      problem_type="multi_label_classification")
    run(argv + ["--model", f"toxicity={retrained}"])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["reuse"]["rerun"] == ["toxicity"] and manifest["reuse"]["carried"] == ["stance"]
    assert manifest["inferences"] == {"stance": 0, "toxicity": 4}
    _, second = read_rows(out)
    assert {r: row["stance_score"] for r, row in second.items()} == {r: row["stance_score"] for r, row in first.items()}
    fresh = reference(str(retrained), clean_text(POSTS[0]["text"]), multi_label=True)
    assert second["en0"]["toxicity_insult"] == pytest.approx(float(fresh[0]), abs=1e-5)


def test_offline_with_ones_own_classifier_alone_the_message_names_only(tmp_path, own_checkpoints, capsys):
    """`--model stance=DIR` adds stance beside the four, whose published checkpoints come from the hub:
    offline (HF_HUB_OFFLINE, tests/conftest.py) the run stops before reading, each failed fetch named,
    and its last line says the four are in the run by default and gives the --only that leaves them
    out; that command then labels with stance alone."""
    from pipelines import label_corpus

    out = tmp_path / "out"
    argv = ["--input", write_posts(tmp_path / "posts.jsonl"), "--output", str(out),
            "--model", f"stance={own_checkpoints['stance']}", "--device", "cpu"]
    assert label_corpus.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split("'")[1] for line in err[:-1]] == ["politics", "stars", "sentiment", "emotion"]
    assert all("could not be fetched" in line for line in err[:-1])
    assert err[-1] == ("label_corpus: politics, stars, sentiment, emotion are in every run that --only does not "
                       "narrow (published checkpoints, from the Hugging Face hub); for yours alone: --only stance")
    assert not out.exists()
    assert label_corpus.main([*argv, "--only", "stance"]) == 0  # the fix the line names
    table, rows = read_rows(out)
    assert {row["stance"] for row in rows.values() if row["clean_text"]} <= set(STANCE)
    assert not [c for c in table.column_names if c.startswith(("politics", "stars", "sentiment", "emotion"))]


def test_the_line_after_failed_fetches_names_only_where_defaults_failed_beside_checkpoints_of_ones_own():
    from models.classifiers import PUBLISHED
    from pipelines.label_corpus import OFFLINE_HINT, unfetched_hint

    published = {name: c.published_checkpoint for name, c in PUBLISHED.items()}
    mine = {**published, "sentiment": "/ckpt/sentiment", "stance": "org/stance"}
    assert unfetched_hint(mine, ("politics", "stars")).endswith(
        "politics, stars are in every run that --only does not narrow (published checkpoints, from the Hugging "
        "Face hub); for yours alone: --only sentiment,stance")
    assert "emotion is in every run" in unfetched_hint(mine, ("emotion", "stance"))
    assert unfetched_hint(published, tuple(published)) == OFFLINE_HINT  # nothing of one's own: the demo
    assert unfetched_hint(mine, ("stance",)) == OFFLINE_HINT  # the four were fetched: only stance's own line

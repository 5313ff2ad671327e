"""Generic tasks: any task name besides the published four, single-label from a `label` column or
multi-label from a `labels` column (or 0/1 columns named by --labels), trained with pipelines.train
and labeled by pipelines.label_corpus with `--model NAME=DIR` alone."""
from __future__ import annotations

import glob
import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.training import TrainingDataError, TrainingSetupError
from models.training.data import load_task_data
from models.training.metrics import compute_metrics
from pipelines import train

FILLER = "today my friend said that the news was on tv again this week at work".split()
STANCES = ("against", "favor", "neutral")  # sorted: the label order read from strings
STANCE_WORDS = {"against": ["oppose", "reject"], "favor": ["support", "endorse"], "neutral": ["maybe", "unsure"]}
TOXICITY = ("insult", "threat", "obscene")  # the --labels order (not sorted)
TOXIC_WORDS = {"insult": ["idiot", "moron"], "threat": ["hurt", "destroy"], "obscene": ["filthy", "crude"]}
TRAIN_FLAGS = ["--base-model", "tiny", "--lr", "3e-3", "--batch-size", "8", "--epochs", "1", "--max-length", "32",
               "--device", "cpu", "--no-progress"]
POSTS = [
    {"id": "a", "text": "I support and endorse this plan"},
    {"id": "b", "text": "we reject it, you idiot, and we will destroy it"},
    {"id": "c", "text": "maybe, unsure what to think about the news"},
    {"id": "d", "text": "filthy crude moron"},
    {"id": "e", "text": "这家店非常好！"},  # a generic classifier runs on every language
]


def _sentence(rng: random.Random, words: list[str]) -> str:
    tokens = rng.sample(FILLER, 4) + words
    rng.shuffle(tokens)
    return " ".join(tokens)


def stance_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        stance = rng.choice(STANCES)
        rows.append({"text": _sentence(rng, [rng.choice(STANCE_WORDS[stance])]), "label": stance})
    return rows


def toxicity_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = rng.sample(TOXICITY, k=rng.choice([0, 1, 1, 2]))
        rows.append({"text": _sentence(rng, [rng.choice(TOXIC_WORDS[x]) for x in labels]), "labels": labels})
    return rows


def as_integers(rows: list[dict]) -> list[dict]:
    """The stance rows with each label as its index in STANCES (named by --labels)."""
    return [{"text": r["text"], "label": STANCES.index(r["label"])} for r in rows]


def as_columns(rows: list[dict]) -> list[dict]:
    """The toxicity rows with one 0/1 column per label (named by --labels)."""
    return [{"text": r["text"], **{label: int(label in r["labels"]) for label in TOXICITY}} for r in rows]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _error(task: str, path: str, **kwargs) -> str:
    with pytest.raises(TrainingDataError) as info:
        load_task_data(task, path, **kwargs)
    return str(info.value)


# ----------------------------------------------------------------------------- reading the labels


def test_single_label_from_strings_integers_named_by_labels_or_bare_integers(tmp_path):
    rows = stance_rows(12)
    expected = [STANCES.index(r["label"]) for r in rows]
    strings, space = load_task_data("stance", write_jsonl(tmp_path / "s.jsonl", rows))
    assert space.names == STANCES and space.problem_type == "single_label_classification"
    assert strings.targets.tolist() == expected and strings.targets.dtype == np.int64
    pl.DataFrame(as_integers(rows)).write_csv(tmp_path / "i.csv")  # CSV: the integers are read as strings
    named, named_space = load_task_data("stance", str(tmp_path / "i.csv"), labels=list(STANCES))
    assert named_space == space and named.targets.tolist() == expected
    bare, bare_space = load_task_data("stance", write_jsonl(tmp_path / "i.jsonl", as_integers(rows)))
    assert bare_space.names == ("0", "1", "2") and bare.targets.tolist() == expected
    # --labels fixes the order: "neutral" is class 0 here
    ordered, _ = load_task_data("stance", str(tmp_path / "s.jsonl"), labels=["neutral", "favor", "against"])
    assert ordered.targets.tolist() == [["neutral", "favor", "against"].index(r["label"]) for r in rows]


def test_multi_label_from_a_list_column_json_or_comma_strings_or_01_columns(tmp_path):
    rows = toxicity_rows(12)
    listed, space = load_task_data("toxicity", write_jsonl(tmp_path / "t.jsonl", rows), labels=list(TOXICITY))
    expected = [[float(label in r["labels"]) for label in TOXICITY] for r in rows]
    assert space.names == TOXICITY and space.problem_type == "multi_label_classification"
    assert listed.targets.tolist() == expected and listed.targets.dtype == np.float32
    found, found_space = load_task_data("toxicity", str(tmp_path / "t.jsonl"))
    assert found_space.names == tuple(sorted({x for r in rows for x in r["labels"]}))
    pl.DataFrame(as_columns(rows)).write_csv(tmp_path / "c.csv")
    columns, columns_space = load_task_data("toxicity", str(tmp_path / "c.csv"), labels=list(TOXICITY))
    assert columns_space == space and columns.targets.tolist() == expected
    pl.DataFrame({"text": ["a", "b", "c"], "labels": ["insult; threat", '["obscene"]', ""]}).write_csv(tmp_path / "s.csv")
    strings, _ = load_task_data("toxicity", str(tmp_path / "s.csv"), labels=list(TOXICITY))
    assert strings.targets.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_data_errors_name_the_problem(tmp_path):
    both = write_jsonl(tmp_path / "both.jsonl", [{"text": "x", "label": "favor", "labels": ["insult"]}])
    message = _error("stance", both)
    assert "both a 'label' column (single-label) and a 'labels' column (multi-label)" in message
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"text": "x", "label": "favor"}, {"text": "y", "label": "angry"}])
    message = _error("stance", unknown, labels=list(STANCES))
    assert "row 2, column 'label': unknown label 'angry'; known: against, favor, neutral" in message
    out_of_range = write_jsonl(tmp_path / "r.jsonl", [{"text": "x", "label": 1}, {"text": "y", "label": 3}])
    message = _error("stance", out_of_range, labels=list(STANCES))
    assert "row 2, column 'label': integer label 3 is out of range: 3 labels" in message and "0-2" in message
    negative = write_jsonl(tmp_path / "n.jsonl", [{"text": "x", "label": 1}, {"text": "y", "label": -1}])
    assert "class indices from 0; found -1" in _error("stance", negative)
    one_class = write_jsonl(tmp_path / "o.jsonl", [{"text": "x", "label": "favor"}, {"text": "y", "label": "favor"}])
    assert "at least 2 labels" in _error("stance", one_class)
    unknown_tag = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "labels": ["insult", "rude"]}])
    message = _error("toxicity", unknown_tag, labels=list(TOXICITY))
    assert "row 1, column 'labels': unknown label(s) rude;" in message
    columns = write_jsonl(tmp_path / "c.jsonl", [{"text": "x", "insult": 1, "threat": 2}])
    message = _error("toxicity", columns, labels=["insult", "threat", "obscene"])
    assert "no 0/1 column for label(s) obscene (" in message
    message = _error("toxicity", write_jsonl(tmp_path / "c2.jsonl", [{"text": "x", "insult": 1, "threat": 2}]),
                     labels=["insult", "threat"])
    assert "row 1, column 'threat': 2 is not 0 or 1" in message
    none = write_jsonl(tmp_path / "none.jsonl", [{"text": "x", "insult": 1}])
    assert "needs a 'label' column (one label per row), a 'labels' column" in _error("toxicity", none)
    with pytest.raises(TrainingSetupError, match="not a valid column prefix"):
        load_task_data("Bad-Name", none)


def test_generic_metrics_macro_f1_with_accuracy_and_tuned_thresholds():
    # single-label: truth [0, 1, 2, 2], predicted [0, 1, 2, 1]: accuracy 3/4; F1 1, 2/3, 2/3
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [0, 3.0, 0]])
    single = compute_metrics("stance", logits, np.array([0, 1, 2, 2]), STANCES,
                             problem_type="single_label_classification")
    assert single["metric"] == "macro_f1" and single["score"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert single["overall"]["accuracy"] == pytest.approx(0.75) and "thresholds" not in single
    # multi-label: the label at probability 0.3 counts only with a tuned threshold
    probs = np.array([[0.3, 0.9], [0.2, 0.1]])
    multi = compute_metrics("toxicity", np.log(probs / (1 - probs)), np.array([[1, 1], [0, 0]]), ["insult", "threat"],
                            tune=True, problem_type="multi_label_classification")
    assert multi["score"] == pytest.approx(1.0) and multi["overall"]["macro_f1_at_0.5"] == pytest.approx(0.5)
    assert 0.2 < multi["thresholds"]["insult"] <= 0.3


def test_a_generic_task_gets_the_default_recipe_and_a_bad_name_one_line(tmp_path, capsys):
    task_args, args = train.parse_args(["--task", "stance", "--train", "x.jsonl", "--output", "o"])
    request = train.build_request(task_args, args)
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            str(args.lr_scheduler_type.value), args.num_train_epochs, args.seed, request.eval_fraction,
            args.metric_for_best_model) == (2e-5, 16, 1, "linear", 3, 42, 0.2, "macro_f1")
    assert train.main(["--task", "Stance!", "--train", "x.jsonl", "--output", str(tmp_path / "o")]) == 2
    assert "not a valid column prefix" in capsys.readouterr().err


# ----------------------------------------------------------------------------- training end to end


def _forward_columns(checkpoint: str, name: str, texts: list[str]) -> list[dict]:
    """What the pipeline should write, from a plain forward pass of the saved model, one text at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from transforms.cleaning import CleaningOptions, clean_text

    config = json.loads(Path(checkpoint, "config.json").read_text())
    options = CleaningOptions.from_dict(config["label_corpus_cleaning"])
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    out = []
    for text in texts:
        with torch.no_grad():
            logits = model(**tokenizer(clean_text(text, options), return_tensors="pt", truncation=True)).logits[0]
        if config.get("problem_type") == "multi_label_classification":
            probs = torch.sigmoid(logits.double())
            cols = {f"{name}_{label}": float(p) for label, p in zip(labels, probs)}
            cols[name] = [label for label, p, t in zip(labels, probs, config["thresholds"]) if p >= t]
        else:
            probs = torch.softmax(logits.double(), -1)
            cols = {name: labels[int(probs.argmax())], f"{name}_score": float(probs.max())}
        out.append(cols)
    return out


@pytest.mark.parametrize("layout", ["strings and a list column", "integers and 0/1 columns with --labels"])
def test_generic_tasks_train_and_label_with_model_flags_alone(tmp_path, layout):
    import pyarrow.parquet as pq

    from pipelines import label_corpus

    stance, toxicity = stance_rows(60, seed=1), toxicity_rows(60, seed=2)
    if layout.startswith("strings"):
        stance_flags, toxicity_flags = [], []
    else:
        stance, toxicity = as_integers(stance), as_columns(toxicity)
        stance_flags, toxicity_flags = ["--labels", ",".join(STANCES)], ["--labels", ",".join(TOXICITY)]
    checkpoints = {}
    for name, rows, flags in (("stance", stance, stance_flags), ("toxicity", toxicity, toxicity_flags)):
        checkpoints[name] = tmp_path / name
        result = train.run(["--task", name, "--train", write_jsonl(tmp_path / f"{name}.jsonl", rows),
                            "--output", str(checkpoints[name]), *flags, *TRAIN_FLAGS])
        assert len(result.history) == 1 and result.metric == "macro_f1"
        metrics = json.loads((checkpoints[name] / "metrics.json").read_text())
        assert (metrics["train_rows"], metrics["eval_rows"]) == (48, 12)  # the default 80/20 split
        assert "the default recipe of a generic task" in (checkpoints[name] / "README.md").read_text()

    stance_config = json.loads((checkpoints["stance"] / "config.json").read_text())
    assert stance_config["problem_type"] == "single_label_classification" and "thresholds" not in stance_config
    assert [stance_config["id2label"][str(i)] for i in range(3)] == list(STANCES)
    assert "accuracy" in json.loads((checkpoints["stance"] / "metrics.json").read_text())["eval"]["overall"]
    toxicity_config = json.loads((checkpoints["toxicity"] / "config.json").read_text())
    toxicity_labels = [toxicity_config["id2label"][str(i)] for i in range(3)]
    assert toxicity_config["problem_type"] == "multi_label_classification"
    assert sorted(toxicity_labels) == sorted(TOXICITY) and len(toxicity_config["thresholds"]) == 3
    toxicity_metrics = json.loads((checkpoints["toxicity"] / "metrics.json").read_text())
    assert toxicity_metrics["thresholds"] == dict(zip(toxicity_labels, toxicity_config["thresholds"]))

    posts, out = write_jsonl(tmp_path / "posts.jsonl", POSTS), tmp_path / "labeled"
    label_corpus.run(["--input", posts, "--output", str(out), "--model", f"stance={checkpoints['stance']}",
                      "--model", f"toxicity={checkpoints['toxicity']}", "--only", "stance,toxicity",
                      "--device", "cpu", "--cpu-backend", "torch"])
    labeled = {row["id"]: row for path in sorted(glob.glob(str(out / "labels*.parquet")))
               for row in pq.read_table(path).to_pylist()}
    assert set(labeled) == {p["id"] for p in POSTS}
    texts = [p["text"] for p in POSTS]
    for name in ("stance", "toxicity"):
        for post, want in zip(POSTS, _forward_columns(str(checkpoints[name]), name, texts)):
            for column, value in want.items():
                got = labeled[post["id"]][column]
                if isinstance(value, float):
                    assert got == pytest.approx(value, abs=1e-4), (post["id"], column)
                else:
                    assert got == value, (post["id"], column)

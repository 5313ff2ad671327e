"""The training entrypoint: data validation, metrics, thresholds, presets, and each task
trained for a few steps into a checkpoint that the labeling pipeline loads and scores
exactly as a plain forward pass of the saved model does."""
from __future__ import annotations

import glob
import json
import logging
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.classifiers.politics import CLASSES as POLITICS_CLASSES, TOPICS as POLITICS_TOPICS
from models.training import TrainingDataError, TrainingSetupError
from models.training.data import load_task_data, split_indices
from models.training.metrics import compute_metrics, flatten, tune_thresholds, unflatten
from models.training.recipes import PUBLISHED_PRESETS, nearest_optimizer
from pipelines import train
from transforms.cleaning import CleaningOptions, clean_text

# ----------------------------------------------------------------------------- generated data

FILLER = "today my friend said that the news was on tv again this week at work".split()
EMOTION_WORDS = {"anger": ["furious", "angry"], "joy": ["happy", "delighted"], "sadness": ["sad", "crying"]}
STAR_WORDS = {1: "太差了", 2: "不太好", 3: "一般般", 4: "挺不错", 5: "非常好"}
POLARITY_WORDS = {1: "terrible", 2: "discussed", 3: "wonderful"}


def _sentence(rng: random.Random, words: list[str]) -> str:
    tokens = rng.sample(FILLER, 4) + words
    rng.shuffle(tokens)
    return " ".join(tokens)


def make_rows(task: str, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        if task == "sentiment":
            label = rng.randint(0, 1)
            rows.append({"text": _sentence(rng, [rng.choice(["great", "love"] if label else ["awful", "hate"])]),
                         "label": ["negative", "positive"][label]})
        elif task == "stars":
            star = rng.randint(1, 5)
            rows.append({"text": "这家店" + STAR_WORDS[star] + rng.choice(["", "。", "！"]), "stars": star})
        elif task == "emotion":
            labels = rng.sample(list(EMOTION_WORDS), k=rng.choice([1, 1, 2]))
            rows.append({"text": _sentence(rng, [rng.choice(EMOTION_WORDS[x]) for x in labels]), "emotions": labels})
        else:
            row = {topic: 0 for topic in POLITICS_TOPICS}
            words = []
            for topic in rng.sample(POLITICS_TOPICS[:3], k=rng.choice([1, 2])):
                cls = rng.randint(1, 3)
                row[topic] = cls
                words += [topic, POLARITY_WORDS[cls]]
            rows.append({"text": _sentence(rng, words), **row})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


POSTS = [
    {"id": "a", "text": "so happy and delighted today @someone https://example.com/x"},
    {"id": "b", "text": "awful awful, I hate this 😡"},
    {"id": "c", "text": "这家店非常好！"},
    {"id": "d", "text": "democracy terrible and economy wonderful"},
    {"id": "e", "text": "@user https://t.co/abc"},  # "http" once cleaned as in training
    {"id": "h", "text": "@user @other"},  # nothing left after cleaning
    {"id": "f", "text": "crying, sad and furious about the news at work this week " * 3},
    {"id": "g", "text": "一般般"},
]

# ----------------------------------------------------------------------------- pure functions


def test_threshold_tuning_finds_the_known_best_threshold():
    probs = np.array([[0.62, 0.20, 0.9], [0.70, 0.25, 0.8], [0.90, 0.10, 0.7],
                      [0.10, 0.05, 0.6], [0.30, 0.10, 0.3], [0.55, 0.05, 0.2]])
    targets = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    thresholds = tune_thresholds(probs, targets)
    # label 0: F1 = 1 exactly for thresholds in (0.55, 0.62]; the middle of the grid values there is 0.59
    assert thresholds[0] == pytest.approx(0.59)
    # label 1: positives at 0.20 and 0.25, negatives at most 0.10: best in (0.10, 0.20] -> middle 0.16
    assert thresholds[1] == pytest.approx(0.16)
    # label 2: no positives in the eval split -> keep 0.5
    assert thresholds[2] == pytest.approx(0.5)


def _logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


def test_stars_and_sentiment_metrics_against_hand_values():
    # sentiment: truth [0, 0, 1, 1], predicted [0, 1, 1, 1] -> accuracy 3/4; F1 negative 2/3, positive 4/5
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [-1.0, 1.0]])
    metrics = compute_metrics("sentiment", logits, np.array([0, 0, 1, 1]), ["negative", "positive"])
    assert metrics["metric"] == "accuracy" and metrics["score"] == pytest.approx(0.75)
    assert metrics["per_label"]["negative"]["f1"] == pytest.approx(2 / 3)
    assert metrics["per_label"]["positive"]["f1"] == pytest.approx(0.8)
    assert metrics["overall"]["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # stars: the star is the arg-max of the sigmoids; ROC AUC per star, averaged over stars with both classes
    probs = np.array([[0.9, 0.2, 0.1, 0.1, 0.1], [0.3, 0.8, 0.1, 0.1, 0.1], [0.1, 0.6, 0.7, 0.1, 0.1],
                      [0.2, 0.1, 0.1, 0.1, 0.95]])
    stars = compute_metrics("stars", _logit(probs), np.array([0, 1, 1, 4]), ["Star_1", "Star_2", "Star_3", "Star_4",
                                                                           "Star_5"])
    assert stars["overall"]["accuracy"] == pytest.approx(0.75)  # the third row is predicted 3 stars, not 2
    # star 1: AUC 1; star 2: positives 0.8, 0.6 vs negatives 0.2, 0.1 -> 1; star 5: 1 -> mean 1
    assert stars["overall"]["roc_auc"] == pytest.approx(1.0)
    assert stars["per_label"]["Star_2"]["recall"] == pytest.approx(0.5)


def test_politics_metrics_are_per_topic_and_their_mean():
    targets = np.zeros((4, 12), dtype=int)
    targets[:, 0] = [1, 2, 3, 0]
    logits = np.zeros((4, 48))
    for row, cls in enumerate([1, 2, 3, 3]):  # topic 0: 3 of 4 right
        logits[row, cls] = 5.0
    for row in range(4):  # every other topic: "unknown", all right
        for topic in range(1, 12):
            logits[row, topic * 4] = 5.0
    metrics = compute_metrics("politics", logits, targets, POLITICS_TOPICS)
    assert metrics["metric"] == "overall_f1"
    assert metrics["per_label"]["democracy"]["accuracy"] == pytest.approx(0.75)
    # weighted F1 over the classes seen: 1, 2 right (F1 1, support 1 each), 3 (F1 2/3, support 1), 0 (F1 0, support 1)
    democracy_f1 = (1 + 1 + 2 / 3 + 0) / 4
    assert metrics["per_label"]["democracy"]["f1"] == pytest.approx(democracy_f1)
    assert metrics["per_label"]["economy"]["f1"] == 1.0
    assert metrics["score"] == pytest.approx((democracy_f1 + 11) / 12)
    assert metrics["overall"]["overall_accuracy"] == pytest.approx((0.75 + 11) / 12)
    assert metrics["overall"]["overall_macro_f1"] == pytest.approx((democracy_f1 + 11) / 12)


def test_emotion_metrics_use_the_thresholds():
    logits = _logit([[0.3, 0.9], [0.2, 0.1]])
    targets = np.array([[1, 1], [0, 0]])
    at_half = compute_metrics("emotion", logits, targets, ["joy", "anger"])
    tuned = compute_metrics("emotion", logits, targets, ["joy", "anger"], thresholds=np.array([0.25, 0.5]))
    assert at_half["score"] == pytest.approx(0.5)
    assert tuned["score"] == pytest.approx(1.0)
    assert tuned["thresholds"] == {"joy": 0.25, "anger": 0.5}
    assert compute_metrics("emotion", logits, targets, ["joy", "anger"], tune=True)["score"] == pytest.approx(1.0)


def test_flat_metrics_round_trip():
    metrics = compute_metrics("emotion", _logit([[0.3, 0.9], [0.2, 0.1]]), np.array([[1, 1], [0, 0]]),
                              ["joy", "anger"], thresholds=np.array([0.25, 0.5]))
    flat = flatten(metrics)
    assert all(isinstance(v, (int, float)) for v in flat.values())  # what trackers accept
    back = unflatten({f"eval_{k}": v for k, v in flat.items()})
    assert back["overall"] == metrics["overall"] and back["per_label"] == metrics["per_label"]
    assert back["thresholds"] == metrics["thresholds"]


def test_split_is_seeded_and_sized():
    train_a, eval_a = split_indices(50, 0.2, seed=42)
    train_b, eval_b = split_indices(50, 0.2, seed=42)
    assert len(eval_a) == 10 and len(train_a) == 40
    assert set(train_a) | set(eval_a) == set(range(50)) and not set(train_a) & set(eval_a)
    assert list(eval_a) == list(eval_b)
    assert list(eval_a) != list(split_indices(50, 0.2, seed=7)[1])


def test_presets_follow_the_cards_and_every_flag_overrides():
    task_args, args = train.parse_args(["--task", "emotion", "--train", "x.jsonl", "--output", "out"])
    request = train.build_request(task_args, args)
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            str(args.lr_scheduler_type.value), args.num_train_epochs, request.focal_alpha, request.focal_gamma,
            request.max_length, request.eval_fraction, args.metric_for_best_model) == (
        2e-5, 4, 8, "cosine", 3, 0.25, 2.0, 128, 0.1, "macro_f1")
    assert args.load_best_model_at_end and str(args.eval_strategy.value) == str(args.save_strategy.value) == "epoch"
    assert args.output_dir == "out"  # train_classifier moves it to out/training_state
    assert request.base_model is None  # resolved to the published base (roberta-large) at training time
    _, politics = train.parse_args(["--task", "politics", "--train", "x", "--output", "o"])
    assert (politics.learning_rate, politics.per_device_train_batch_size, politics.gradient_accumulation_steps,
            politics.num_train_epochs, politics.seed, politics.metric_for_best_model) == (5e-5, 16, 2, 16, 42,
                                                                                          "overall_f1")
    # Trainer's own flags as they are, and the short spellings
    task_args, custom = train.parse_args([
        "--task", "emotion", "--train", "x", "--output_dir", "o", "--learning_rate", "1e-3", "--head-lr", "1e-2",
        "--per_device_train_batch_size", "32", "--grad-accum", "1", "--epochs", "7", "--scheduler", "linear",
        "--warmup_steps", "0.1", "--max-length", "64", "--seed", "3", "--fp16", "false", "--focal-alpha", "0.5",
        "--focal_gamma", "1", "--eval-fraction", "0.3", "--url-token", "http", "--labels", "joy, anger",
        "--report_to", "none", "--optim", "adamw_torch", "--weight_decay", "0.01", "--device", "cpu"])
    request = train.build_request(task_args, custom)
    assert (custom.learning_rate, custom.per_device_train_batch_size, custom.gradient_accumulation_steps,
            custom.num_train_epochs, str(custom.lr_scheduler_type.value), custom.warmup_steps, custom.seed,
            custom.fp16, custom.weight_decay, custom.use_cpu) == (1e-3, 32, 1, 7, "linear", 0.1, 3, False, 0.01, True)
    assert (request.head_learning_rate, request.max_length, request.focal_alpha, request.focal_gamma,
            request.eval_fraction, request.output) == (1e-2, 64, 0.5, 1.0, 0.3, "o")
    assert request.cleaning == CleaningOptions(url_token="http")
    assert request.labels == ["joy", "anger"]


def test_emotion_optimizer_is_the_cards_where_it_can_run(monkeypatch, caplog):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with caplog.at_level("WARNING"):
        assert nearest_optimizer("adamw_8bit", cuda=True) == "adamw_torch"
    assert "needs bitsandbytes" in caplog.text and "pip install '.[bnb]'" in caplog.text
    assert nearest_optimizer("adafactor", cuda=False) == "adafactor"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    assert nearest_optimizer("adamw_8bit", cuda=True) == "adamw_8bit"
    assert nearest_optimizer("adamw_8bit", cuda=False) == "adamw_torch"
    assert PUBLISHED_PRESETS["emotion"]["optim"] == "adamw_8bit"


def test_help_names_the_command_and_explains_the_switches():
    text = train.make_parser().format_help()
    assert text.startswith("usage: python -m pipelines.train")
    assert "DESIGN.md" not in text and "docs/training.md" in text
    squashed = " ".join(text.split())
    assert "--no-progress [NO_PROGRESS] no progress bars" in squashed
    assert "instead of tuning one per label" in squashed
    for flag in ("--per_device_train_batch_size", "--gradient_accumulation_steps", "--optim", "--report_to", "--fp16"):
        assert flag in text


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bars_by_default_in_a_terminal_and_no_pinned_memory_on_cpu(monkeypatch, terminal):
    import sys
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    hf_logging.set_verbosity_error()  # what console.setup does: Trainer's own default would then hide the bars
    try:
        base = ["--task", "sentiment", "--train", "x.jsonl", "--output", "o", "--device", "cpu"]
        _, args = train.parse_args(base)
        assert args.disable_tqdm is (not terminal) and args.dataloader_pin_memory is False
        assert train.parse_args(base + ["--no_progress"])[1].disable_tqdm is True
        assert train.parse_args(base + ["--disable_tqdm", "true"])[1].disable_tqdm is True
    finally:
        hf_logging.set_verbosity_warning()


def test_a_new_head_is_one_line_of_ours_and_a_missing_body_weight_a_warning(tmp_path, caplog):
    """transformers' loader (the reference) reports what the base lacks; we say it in one line."""
    from transformers import BertConfig, BertModel

    from models.training.base_models import build_model
    from models.training.data import LabelSpace
    from models.tiny_checkpoints import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer(lowercase=True, vocab_size=300)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    space = LabelSpace("sentiment", ("negative", "positive"))
    with caplog.at_level("INFO", logger="models.training"):
        build_model(space, str(tmp_path / "base"), [])
    assert "new classification head (classifier.bias, classifier.weight) starts at random" in caplog.text
    ours = lambda level: [r.getMessage() for r in caplog.records if r.name.startswith("models.") and r.levelname == level]
    assert not ours("WARNING")
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "base" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.0.output.dense" not in k},
              str(tmp_path / "base" / "model.safetensors"), metadata={"format": "pt"})
    caplog.clear()
    with caplog.at_level("INFO", logger="models.training"):
        build_model(space, str(tmp_path / "base"), [])
    warnings = ours("WARNING")
    assert len(warnings) == 1 and "layer.0.output.dense" in warnings[0] and "classifier" not in warnings[0]


def test_an_uncached_hub_model_fails_at_once_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_jsonl(tmp_path / "s.jsonl", make_rows("sentiment", 10))
    with pytest.raises(TrainingSetupError, match="HF_HUB_OFFLINE is set") as info:
        train.run(["--task", "sentiment", "--train", data, "--output", str(tmp_path / "o"),
                   "--base_model", "nobody-here/not-a-cached-model", "--device", "cpu"])
    assert "local directory" in str(info.value)


# ----------------------------------------------------------------------------- data formats and errors


def test_politics_reads_csv_and_parquet_with_numbers_or_names(tmp_path):
    rows = make_rows("politics", 6)
    df = pl.DataFrame(rows)
    df.write_parquet(tmp_path / "p.parquet")
    named = df.with_columns([pl.col(t).map_elements(lambda v: POLITICS_CLASSES[v], return_dtype=pl.String)
                             for t in POLITICS_TOPICS])
    named.write_csv(tmp_path / "p.csv")
    from_parquet, space = load_task_data("politics", str(tmp_path / "p.parquet"))
    from_csv, _ = load_task_data("politics", str(tmp_path / "p.csv"))
    expected = np.array([[r[t] for t in POLITICS_TOPICS] for r in rows])
    assert np.array_equal(from_parquet.targets, expected)
    assert np.array_equal(from_csv.targets, expected)
    assert len(space.id2label) == 48 and space.id2label[5] == "economy_negative"


def test_emotion_label_layouts(tmp_path):
    listed, space = load_task_data("emotion", write_jsonl(tmp_path / "e.jsonl", [
        {"text": "happy", "emotions": ["joy"]}, {"text": "grr sad", "emotions": ["anger", "sadness"]},
        {"text": "meh", "emotions": []}]))
    assert space.names == ("anger", "joy", "sadness")  # sorted names found in the data
    assert listed.targets.tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    pl.DataFrame({"text": ["happy", "grr"], "Joy": [1, 0], "Anger": [0, 1], "id": [1, 2]}).write_csv(tmp_path / "e.csv")
    columns, space = load_task_data("emotion", str(tmp_path / "e.csv"))
    assert space.names == ("Joy", "Anger") and columns.targets.tolist() == [[1, 0], [0, 1]]
    chosen, space = load_task_data("emotion", str(tmp_path / "e.csv"), labels=["anger"])
    assert space.names == ("anger",) and chosen.targets.tolist() == [[0], [1]]
    pl.DataFrame({"text": ["a", "b"], "emotions": ["joy; anger", "[\"joy\"]"]}).write_csv(tmp_path / "s.csv")
    strings, space = load_task_data("emotion", str(tmp_path / "s.csv"), labels=["joy", "anger"])
    assert strings.targets.tolist() == [[1, 1], [1, 0]]


def _error(task, path, **kwargs) -> str:
    with pytest.raises(TrainingDataError) as info:
        load_task_data(task, path, **kwargs)
    return str(info.value)


def test_unknown_label_names_are_reported_by_row_and_column(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "ok", "emotions": ["joy"]},
                                              {"text": "bad", "emotions": ["joy", "rage"]}])
    message = _error("emotion", path, labels=["joy", "anger"])
    assert "row 2, column 'emotions'" in message and "unknown label(s) rage;" in message
    path = write_jsonl(tmp_path / "s.jsonl", [{"text": "fine", "label": "positive"}, {"text": "hm", "label": "neutral"}])
    message = _error("sentiment", path)
    assert "row 2, column 'label'" in message and "'neutral'" in message
    path = write_jsonl(tmp_path / "st.jsonl", [{"text": "好", "stars": 6}])
    assert "row 1, column 'stars'" in _error("stars", path)
    rows = make_rows("politics", 3)
    rows[2]["economy"] = "meh"
    message = _error("politics", write_jsonl(tmp_path / "p.jsonl", rows))
    assert "row 3, column 'economy'" in message and "'meh'" in message


def test_wrong_number_of_topic_columns(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "environment"} for r in make_rows("politics", 3)]
    message = _error("politics", write_jsonl(tmp_path / "p.jsonl", rows))
    assert "one column per topic (12" in message and message.endswith("found 11, missing environment")


def test_empty_text_is_an_error_naming_the_row(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"text": "great", "label": 1}, {"text": "@user https://t.co/x", "label": 0},
                                              {"text": None, "label": 0}])
    message = _error("sentiment", path)
    assert "2 problem(s)" in message
    assert "row 2, column 'text': empty text after cleaning" in message and "row 3, column 'text': missing text" in message
    message = _error("sentiment", path, text_field="body")
    assert "column 'body': missing" in message


def test_cli_prints_a_clear_error_not_a_traceback(tmp_path, capsys):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "   ", "emotions": ["joy"]}])
    code = train.main(["--task", "emotion", "--train", path, "--output", str(tmp_path / "out"),
                       "--base-model", "tiny"])
    err = capsys.readouterr().err
    assert code == 2
    # (log lines may come first when an earlier test left the project's console handler installed)
    assert any(line.startswith("train: ") for line in err.splitlines())
    assert "row 1, column 'text'" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "config.json").exists()


# ----------------------------------------------------------------------------- training end to end


def _forward_columns(checkpoint: str, task: str, texts: list[str]) -> list[dict | None]:
    """What the pipeline should write, from a plain forward pass of the saved model, one text at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads(Path(checkpoint, "config.json").read_text())
    options = CleaningOptions.from_dict(config["label_corpus_cleaning"])
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    out = []
    for text in texts:
        cleaned = clean_text(text, options)
        if not cleaned:
            out.append(None)
            continue
        with torch.no_grad():
            logits = model(**tokenizer(cleaned, return_tensors="pt", truncation=True)).logits[0].double()
        if task == "politics":
            probs = torch.softmax(logits.view(12, 4), -1)
            cols = {}
            for t, topic in enumerate(POLITICS_TOPICS):
                cols[f"politics_{topic}"] = POLITICS_CLASSES[int(probs[t].argmax())]
                cols[f"politics_{topic}_score"] = float(probs[t].max())
        elif task == "stars":
            probs = torch.sigmoid(logits)
            cols = {"stars": int(probs.argmax()) + 1, "stars_score": float(probs.max())}
        elif task == "sentiment":
            probs = torch.softmax(logits, -1)
            cols = {"sentiment": labels[int(probs.argmax())], "sentiment_score": float(probs.max())}
        else:
            probs = torch.sigmoid(logits)
            cols = {f"emotion_{label}": float(p) for label, p in zip(labels, probs)}
            cols["emotions"] = [label for label, p, t in zip(labels, probs, config["thresholds"]) if p >= t]
        out.append(cols)
    return out


def _label_with_pipeline(tmp_path: Path, task: str, checkpoint: str) -> dict[str, dict]:
    import pyarrow.parquet as pq

    from pipelines import label_corpus

    posts = write_jsonl(tmp_path / "posts.jsonl", POSTS)
    out = tmp_path / "labeled"
    label_corpus.run(["--input", posts, "--output", str(out), "--only", task, "--model", f"{task}={checkpoint}",
                      "--device", "cpu", "--url-token", "http", "--all-languages"])  # cleaned as in training
    rows = []
    for path in sorted(glob.glob(str(out / "labels*.parquet"))):
        rows += pq.read_table(path).to_pylist()
    return {row["id"]: row for row in rows}


TRAIN_FLAGS = ["--base-model", "tiny", "--lr", "3e-3", "--batch-size", "8", "--grad-accum", "1",
               "--scheduler", "linear", "--max-length", "32", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("task", ["politics", "stars", "sentiment", "emotion"])
def test_each_task_trains_and_its_checkpoint_labels_like_a_forward_pass(tmp_path, task):
    data = write_jsonl(tmp_path / "train.jsonl", make_rows(task, 70, seed=1))
    output = tmp_path / "ckpt"
    result = train.run(["--task", task, "--train", data, "--output", str(output), "--epochs", "3",
                        "--url-token", "http", *TRAIN_FLAGS])

    losses = [entry["train_loss"] for entry in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for name in ("config.json", "tokenizer.json", "model.safetensors", "metrics.json", "README.md"):
        assert (output / name).is_file(), name
    assert not (output / "training_state").exists()
    config = json.loads((output / "config.json").read_text())
    assert CleaningOptions.from_dict(config["label_corpus_cleaning"]) == CleaningOptions(url_token="http")
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch and metrics["score"] == pytest.approx(result.score)
    expected_eval = {"politics": 14, "stars": 14, "sentiment": 14, "emotion": 7}[task]  # 80/20, emotion 90/10
    assert (metrics["train_rows"], metrics["eval_rows"]) == (70 - expected_eval, expected_eval)
    card = (output / "README.md").read_text()
    assert "| Training Loss | Epoch | Step | Validation Loss |" in card
    if task == "politics":
        assert config["topics"] == list(POLITICS_TOPICS) and len(config["id2label"]) == 48
        assert set(metrics["eval"]["per_label"]) == set(POLITICS_TOPICS)
        assert "- Democracy F1: " in card and "- Overall F1: " in card and "Environment Accuracy |" in card
    elif task == "stars":
        assert config["problem_type"] == "multi_label_classification"
        assert [config["id2label"][str(i)] for i in range(5)] == ["Star_1", "Star_2", "Star_3", "Star_4", "Star_5"]
        assert {"f1", "roc_auc", "accuracy"} <= set(metrics["eval"]["overall"])
    elif task == "sentiment":
        assert [config["id2label"]["0"], config["id2label"]["1"]] == ["negative", "positive"]
    else:
        assert config["problem_type"] == "multi_label_classification"
        assert len(config["thresholds"]) == len(config["id2label"]) == 3
        assert metrics["thresholds"] == dict(zip(["anger", "joy", "sadness"], config["thresholds"]))

    labeled = _label_with_pipeline(tmp_path, task, str(output))
    expected = _forward_columns(str(output), task, [p["text"] for p in POSTS])
    assert set(labeled) == {p["id"] for p in POSTS}
    for post, want in zip(POSTS, expected):
        row = labeled[post["id"]]
        if want is None:
            assert row["clean_text"] == "" or row["clean_text"] is None
            continue
        for column, value in want.items():
            if isinstance(value, float):
                assert row[column] == pytest.approx(value, abs=1e-4), (post["id"], column)
            else:
                assert row[column] == value, (post["id"], column)


def test_reported_eval_metrics_are_those_of_the_pipelines_labels(tmp_path):
    """The eval split labeled by label_corpus with the saved checkpoint scores exactly what metrics.json says."""
    import pyarrow.parquet as pq
    from sklearn.metrics import f1_score

    from pipelines import label_corpus

    data = write_jsonl(tmp_path / "train.jsonl", make_rows("emotion", 60, seed=3))
    dev_rows = make_rows("emotion", 30, seed=4)
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"id": str(i), **row} for i, row in enumerate(dev_rows)])
    output = tmp_path / "ckpt"
    result = train.run(["--task", "emotion", "--train", data, "--eval", dev, "--output", str(output), "--epochs", "2",
                        *TRAIN_FLAGS])
    label_corpus.run(["--input", dev, "--output", str(tmp_path / "labeled"), "--only", "emotion",
                      "--model", f"emotion={output}", "--device", "cpu"])
    rows = {r["id"]: r for path in sorted(glob.glob(str(tmp_path / "labeled" / "labels*.parquet")))
            for r in pq.read_table(path).to_pylist()}
    names = ["anger", "joy", "sadness"]
    truth = np.array([[n in row["emotions"] for n in names] for row in dev_rows])
    written = np.array([[n in rows[str(i)]["emotions"] for n in names] for i in range(len(dev_rows))])
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["score"] == result.score
    assert f1_score(truth, written, average="macro", zero_division=0) == pytest.approx(result.score, abs=1e-12)
    for j, name in enumerate(names):
        assert f1_score(truth[:, j], written[:, j], zero_division=0) == pytest.approx(
            metrics["eval"]["per_label"][name]["f1"], abs=1e-12)


KILL_AT_STEP = """
import os, sys
from transformers import TrainerCallback
from pipelines import train

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[1]):
            os._exit(137)  # no cleanup, no saving: as a killed worker

train.run(sys.argv[2:], callbacks=[Kill()])
"""


def test_resume_after_a_kill_mid_epoch_ends_as_an_uninterrupted_run(tmp_path, tiny_checkpoints):
    """40 rows, 8 held out, batch 8: 4 steps an epoch, 3 epochs. Killed at step 6 (mid epoch 2), resumed
    from the epoch-1 checkpoint with every random state (dropout, shuffling) restored: the same history
    and final metrics as a run never stopped (within 1e-6 on CPU, where both runs do the same arithmetic).
    Both start from one saved base model (a scratch tokenizer may number its vocabulary differently
    in another process)."""
    import os
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "train.jsonl", make_rows("sentiment", 40, seed=2))

    def argv(output):
        flags = [f if f != "tiny" else tiny_checkpoints["sentiment"] for f in TRAIN_FLAGS]
        return ["--task", "sentiment", "--train", data, "--output", str(output), "--epochs", "3", *flags]

    whole = train.run(argv(tmp_path / "whole"))
    cut = tmp_path / "cut"
    with pytest.raises(TrainingSetupError, match="no saved training state"):
        train.run(argv(cut) + ["--resume"])
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP, "6", *argv(cut)], env=env, cwd=root,
                            capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert sorted(p.name for p in (cut / "training_state").iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-4"]
    assert not (cut / "config.json").exists()
    with pytest.raises(TrainingSetupError, match="--resume"):
        train.run(argv(cut))
    resumed = train.run(argv(cut) + ["--resume"])
    assert [e["step"] for e in resumed.history] == [e["step"] for e in whole.history] == [4, 8, 12]
    for a, b in zip(resumed.history, whole.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], abs=1e-6)
        for key, value in b["overall"].items():
            assert a["overall"][key] == pytest.approx(value, abs=1e-6), key
    assert (resumed.best_epoch, resumed.score) == (whole.best_epoch, pytest.approx(whole.score, abs=1e-6))
    assert not (cut / "training_state").exists()


def test_log_mode_prints_steps_loss_and_time_left_between_epochs(tmp_path, tiny_checkpoints, caplog):
    """Not a terminal (--no-progress): a line each tenth of the steps (here every step of 8), with
    the steps done of all, the epoch, the mean loss since the last line (Trainer's own average over
    the same steps, logged at every step here, is the reference) and, from the third step on, the
    time left; the last says 0 s."""
    import re

    from transformers import TrainerCallback

    class Logs(TrainerCallback):
        def __init__(self):
            self.losses: dict[int, float] = {}  # step -> Trainer's mean loss since its previous log

        def on_log(self, args, state, control, logs=None, **kwargs):
            if "loss" in (logs or {}):
                self.losses[state.global_step] = logs["loss"]

    data = write_jsonl(tmp_path / "train.jsonl", make_rows("sentiment", 40, seed=3))  # 32 train: 4 steps an epoch
    flags = [f if f != "tiny" else tiny_checkpoints["sentiment"] for f in TRAIN_FLAGS]
    trainer_logs = Logs()
    with caplog.at_level(logging.INFO, logger="models.training.trainer"):
        train.run(["--task", "sentiment", "--train", data, "--output", str(tmp_path / "out"), "--epochs", "2",
                   "--logging_strategy", "steps", "--logging_steps", "1", *flags], callbacks=[trainer_logs])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    parsed = [re.fullmatch(r"step (\d+)/8 \(epoch ([\d.]+) of 2\): loss ([\d.]+)(?:, about (\d+) s left)?", line)
              for line in lines]
    assert all(parsed), lines
    assert [int(m[1]) for m in parsed] == list(range(1, 9))
    assert [float(m[2]) for m in parsed] == pytest.approx([0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 1.8, 2.0], abs=0.06)
    for m in parsed:
        assert float(m[3]) == pytest.approx(trainer_logs.losses[int(m[1])], abs=1e-4)
    assert [m[4] is not None for m in parsed] == [False, False, True, True, True, True, True, True]
    assert parsed[-1][4] == "0"

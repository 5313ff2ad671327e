"""Training quality on real held-out tweets: train with `python -m pipelines.train` (whatever code
PYTHONPATH points at), then score a held-out test split with a plain transformers forward pass of
the saved checkpoint (a reference that shares no code with the training or the pipeline).

    PYTHONPATH=$PWD python -m benchmarks.train_quality --work /tmp/tq --tasks sentiment,emotion

Data: ../shared/corpora/tweeteval_emotion_train.jsonl (3,257 tweets, one of anger, joy, optimism,
sadness each), cut with a fixed seed into train (1,600), dev (400: model selection and the emotion
thresholds) and test (the other 1,257: never seen by training). Tasks:
- emotion (multi-label, sigmoid + thresholds): the four labels; macro F1 on test;
- sentiment (single-label softmax): joy/optimism -> positive, anger/sadness -> negative; accuracy
  and macro F1 on test.
The budget is the same for any code under test: the small MiniLM encoder, 3 epochs, batch 16,
lr 1e-4 (head 2e-3), linear schedule, 10% warm-up, 64 tokens, seed 42, one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tweeteval_emotion_train.jsonl"
POSITIVE = {"joy", "optimism"}
FLAGS = ["--base-model", "small-encoder", "--epochs", "3", "--batch-size", "16", "--grad-accum", "1",
         "--lr", "1e-4", "--head-lr", "2e-3", "--scheduler", "linear", "--warmup-ratio", "0.1",
         "--max-length", "64", "--seed", "42", "--device", "cpu", "--cpu-threads", "1", "--no-progress"]


def split(corpus: Path, work: Path) -> dict[str, list[dict]]:
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(12).shuffle(rows)
    parts = {"train": rows[:1600], "dev": rows[1600:2000], "test": rows[2000:]}
    for task in ("emotion", "sentiment"):
        for name, part in parts.items():
            with open(work / f"{task}_{name}.jsonl", "w", encoding="utf-8") as handle:
                for row in part:
                    out = ({"text": row["text"], "emotions": row["emotions"]} if task == "emotion" else
                           {"text": row["text"], "label": "positive" if row["emotions"][0] in POSITIVE else "negative"})
                    handle.write(json.dumps(out, ensure_ascii=False) + "\n")
    return parts


def score(checkpoint: Path, task: str, test: list[dict]) -> dict:
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from transforms.cleaning import CleaningOptions, clean_text

    config = json.loads((checkpoint / "config.json").read_text())
    options = CleaningOptions.from_dict(config.get("label_corpus_cleaning", {}))
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    logits = []
    with torch.no_grad():
        for row in test:
            encoded = tokenizer(clean_text(row["text"], options) or ".", return_tensors="pt", truncation=True,
                                max_length=64)
            logits.append(model(**encoded).logits[0].float().numpy())
    logits = np.stack(logits)
    if task == "sentiment":
        truth = [int(r["emotions"][0] in POSITIVE) for r in test]
        pred = [1 if labels[i] == "positive" else 0 for i in logits.argmax(-1)]
        return {"accuracy": accuracy_score(truth, pred), "macro_f1": f1_score(truth, pred, average="macro")}
    truth = np.array([[label in r["emotions"] for label in labels] for r in test])
    pred = 1 / (1 + np.exp(-logits)) >= np.asarray(config.get("thresholds") or [0.5] * len(labels))
    return {"macro_f1": f1_score(truth, pred, average="macro", zero_division=0),
            "macro_f1_at_0.5": f1_score(truth, 1 / (1 + np.exp(-logits)) >= 0.5, average="macro", zero_division=0)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for data and checkpoints")
    parser.add_argument("--tasks", default="sentiment,emotion")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    if not args.corpus.is_file():
        print(f"train_quality: {args.corpus} is not there; nothing to measure")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    parts = split(args.corpus, args.work)
    results = {}
    for task in args.tasks.split(","):
        output = args.work / f"ckpt_{task}"
        command = [sys.executable, "-m", "pipelines.train", "--task", task,
                   "--train", str(args.work / f"{task}_train.jsonl"), "--eval", str(args.work / f"{task}_dev.jsonl"),
                   "--output", str(output), *FLAGS]
        started = time.time()
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.time() - started
        dev = json.loads((output / "metrics.json").read_text())
        results[task] = {"train_seconds": round(seconds, 1), "dev": {dev["metric"]: dev["score"]},
                         "test": score(output, task, parts["test"])}
        print(task, json.dumps(results[task]), flush=True)
    print(json.dumps({"pythonpath": os.environ.get("PYTHONPATH"), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

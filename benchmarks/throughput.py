"""Throughput: our Beam pipeline against the stock ways of labeling a corpus, in one run.

    python -m benchmarks.throughput [--n 4000] [--scale small|real] [--corpus PATH.jsonl[.gz]]
        [--contenders ours,hf-loop,ours-unsorted,beam-hf] [--extra ours-torch,ours-ov-fp32,ours-ov-int8,bare-ov,...]
        [--memory-scale 10] [--device cpu|cuda] [--json results.json]

Every contender labels the same N posts with the same four checkpoints (random weights at the
classifiers' architecture shapes, built offline: benchmarks/checkpoints.py) on the same machine,
each in a fresh child process (so peak RSS is its own), timed end to end: from the moment it
starts (torch and transformers already imported, everything else included: Beam's import,
model loading, reading the JSONL, cleaning, inference, writing Parquet) to its output on disk.

- ours: pipelines.label_corpus on the DirectRunner (JSONL in, Parquet out), with the default CPU
  backend and precision (OpenVINO fp32).
- hf-loop: one transformers pipeline("text-classification", batch_size=32) per classifier over
  the same cleaned texts in corpus order, then our heads and a Parquet file.
- ours-unsorted: ours with --no-sort (what length sorting buys).
- beam-hf: Beam's HuggingFacePipelineModelHandler in the same Beam pipeline shape. Beam 2.77 imports
  TensorFlow and transformers' TF classes in that module; where they are missing the table says
  so. --stub-tensorflow puts empty stand-ins in their place (its PyTorch path never uses them).
- ours-torch, ours-bf16, ours-int8 (--extra): --cpu-backend torch at fp32 (the reference, the default
  before OpenVINO), bf16 and int8 (dynamic quantization).
- ours-ov-fp32, ours-ov-bf16, ours-ov-int8 (--extra): --cpu-backend openvino at each precision. Every
  checkpoint is converted (and for int8 calibrated on 300 posts after the measured ones) before
  the clock starts, as on a worker after the first run: the OpenVINO cache beside the checkpoint.
- bare-torch, bare-ov (--extra): the limit: the same checkpoints' forward passes alone (torch fp32;
  OpenVINO fp32, the default) over the planner's sub-batches of the pre-tokenized texts,
  in one process with no Beam, reading, cleaning or writing; "share of bare" divides by the bare
  loop of the contender's own backend.
Label agreement: the share of posts whose labels (every label column) equal ours-torch's.

The table: texts/s, real tokens/s, padding efficiency (real / padded tokens), peak RSS, the ratio
to ours, and the share of the machine's measured matmul peak that the useful (unpadded) FLOPs reach,
over the time spent in forward passes and over the whole run. --json writes the same for tracking.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpora" / "social_posts.jsonl.gz"
CONTENDERS = ("ours", "hf-loop", "ours-unsorted", "beam-hf")
EXTRAS = ("ours-torch", "ours-bf16", "ours-int8", "ours-ov-fp32", "ours-ov-bf16", "ours-ov-int8", "bare-torch",
          "bare-ov")
OURS_FLAGS = {"ours": [], "ours-unsorted": ["--no-sort"], "ours-torch": ["--cpu-backend", "torch"],
              "ours-bf16": ["--cpu-backend", "torch", "--cpu-precision", "bf16"],
              "ours-int8": ["--cpu-backend", "torch", "--cpu-precision", "int8"],
              "ours-ov-fp32": ["--cpu-backend", "openvino", "--cpu-precision", "fp32"],
              "ours-ov-bf16": ["--cpu-backend", "openvino", "--cpu-precision", "bf16"],
              "ours-ov-int8": ["--cpu-backend", "openvino", "--cpu-precision", "int8"]}
BARE = {"bare-torch": "torch", "bare-ov": "openvino"}
CALIBRATION_POSTS = 300
TARGET_X_HF_LOOP, TARGET_SHARE_OF_BARE = 4.0, 0.85
HF_BATCH_SIZE = 32
TOKENIZER_SAMPLE = 20_000


# ---------------------------------------------------------------- corpus

def generated_posts(n: int, seed: int = 7) -> list[dict]:
    """Posts with the shared corpus's length profile (median ~80 characters, p99 ~290, a tail
    to ~3,000), English words with mentions, URLs and emoji, and some Chinese reviews."""
    rng = random.Random(seed)
    words = ("the a and to of in is it you that for on with this was are be at not have but so my we they "
             "vote election government economy price tax job police school love hate great terrible good "
             "bad happy sad angry food delivery hotel room service clean fast slow today really very much "
             "@user http://t.co/x #news 😂 ❤️ 👍").split()
    cjk = "好不错很差服务酒店房间干净送餐速度快慢味道满意推荐一般还可以早餐位置方便价格贵便宜环境设施前台热情态度"
    posts = []
    for i in range(n):
        target = min(3000, max(2, int(rng.lognormvariate(4.36, 0.56))))
        if rng.random() < 0.002:
            target = rng.randint(1000, 3000)
        if rng.random() < 0.1:
            text = "".join(rng.choices(cjk, k=max(1, target // 2)))
        else:
            parts: list[str] = []
            while sum(len(p) + 1 for p in parts) < target:
                parts.append(rng.choice(words))
            text = " ".join(parts)[:target]
        posts.append({"id": f"g{i:07d}", "text": text})
    return posts


def load_posts(path: str | None, n: int) -> tuple[list[dict], str]:
    """The first n posts of the JSONL corpus (cycled when it has fewer, with fresh ids), or
    generated ones when there is no corpus."""
    if path and os.path.exists(path):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            base = [json.loads(line) for line in itertools.islice(handle, n) if line.strip()]
        base = [{"id": str(p.get("id", i)), "text": p["text"]} for i, p in enumerate(base)
                if isinstance(p.get("text"), str)]
        posts = [base[i % len(base)] if i < len(base) else {"id": f"{base[i % len(base)]['id']}~{i // len(base)}",
                                                            "text": base[i % len(base)]["text"]}
                 for i in range(n)]
        return posts, f"{path} (first {n})"
    return generated_posts(n), f"generated ({n} posts, shared corpus length profile)"


def write_jsonl(posts: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for post in posts:
            handle.write(json.dumps(post, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- machine

def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread, user and system."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def matmul_peak(device: str, dtype_name: str, seconds: float = 1.5) -> float:
    """The best FLOP/s of large matrix multiplies on this device and dtype."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    shapes = [(2048, 1024, 1024), (4096, 768, 3072)] if device == "cpu" else [(8192, 8192, 8192)]
    best = 0.0
    for n, k, m in shapes:
        a = torch.randn(n, k, dtype=dtype, device=device)
        b = torch.randn(k, m, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
            if device == "cuda" and count % 10 == 0:
                torch.cuda.synchronize()
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n * k * m * count / (time.perf_counter() - start))
    return best


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    from models.runtime import worker_cores

    return f"{model or 'CPU'}, {worker_cores()} cores"


# ---------------------------------------------------------------- token counts and useful FLOPs

def token_profile(checkpoints: dict[str, str], scale: str, texts: list[str]) -> dict[str, dict]:
    """Per classifier: real token lengths (as the handler truncates), the useful FLOPs of an
    unpadded pass, what a corpus-order batch of 32 pads to, and tokenization time."""
    from models.checkpoints import load_config_dict, load_tokenizer
    from benchmarks.checkpoints import SHAPES, useful_flops

    _, limits = pipeline_cuts(checkpoints)
    profile = {}
    for name, path in checkpoints.items():
        config = load_config_dict(path)
        tokenizer = load_tokenizer(path)
        max_length = limits[name]
        started = time.perf_counter()
        ids = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
        seconds = time.perf_counter() - started
        lengths = [len(x) for x in ids]
        hf_padded = sum(len(lengths[i:i + HF_BATCH_SIZE]) * max(lengths[i:i + HF_BATCH_SIZE])
                        for i in range(0, len(lengths), HF_BATCH_SIZE))
        profile[name] = {
            "real_tokens": sum(lengths), "max_tokens": max(lengths, default=0),
            "useful_flops": useful_flops(SHAPES[scale][name], lengths, len(config["id2label"])),
            "hf_loop_padded_tokens": hf_padded, "tokenize_s": seconds,
            "tokenizer_digest": _tokenizer_digest(path),
        }
    return profile


def _tokenizer_digest(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        file = Path(path) / name
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------- contenders (each in a child process)

def ours_flags(name: str) -> list[str]:
    return OURS_FLAGS[name]


def backend_of(name: str) -> str:
    """The CPU backend a contender runs (for its share of the bare loop of the same backend)."""
    flags = OURS_FLAGS.get(name, [])
    if name in BARE:
        return BARE[name]
    return flags[flags.index("--cpu-backend") + 1] if "--cpu-backend" in flags else "openvino"


def run_bare(spec: dict) -> dict:
    """The forward passes alone: the classifiers loaded as the job loads them, every present text
    tokenized before the clock, then LoadedClassifier.logits (the planner's length-sorted
    sub-batches through the model) timed per classifier."""
    from models.checkpoints import resolve
    from models.classifier import InferenceOptions, load_classifier

    rows = _read_and_clean(spec["input"])
    texts = [row["clean_text"] for row in rows if row["clean_text"]]
    options = InferenceOptions(device=spec["device"], cpu_backend=BARE[spec["name"]],
                               cpu_threads=spec.get("cpu_threads"), max_tokens_per_batch=spec.get("max_tokens"),
                               max_items_per_batch=spec.get("max_items"))
    inference = 0.0
    for name, path in json.loads(Path(spec["models_file"]).read_text()).items():
        loaded = load_classifier(resolve(name, path), options)
        tokenized = loaded.tokenize_each(texts)
        started = time.perf_counter()
        loaded.logits(texts, tokenized)
        inference += time.perf_counter() - started
    return {"inference_s": inference, "rows_written": 0}


def run_ours(spec: dict) -> dict:
    from pipelines.label_corpus import config_from_argv
    from pipelines.labeling import counter_values, label
    from transforms import contract

    argv = ["--input", spec["input"], "--output", spec["output"], "--models", spec["models_file"],
            "--device", spec["device"], "--batch-size", str(spec["batch_size"]), *ours_flags(spec["name"]),
            "--all-languages"]  # every classifier on every post, as the other contenders do
    if spec.get("max_tokens"):
        argv += ["--max-tokens-per-batch", str(spec["max_tokens"])]
    if spec.get("max_items"):
        argv += ["--max-items-per-batch", str(spec["max_items"])]
    if spec.get("cpu_threads"):
        argv += ["--cpu-threads", str(spec["cpu_threads"])]
    argv += spec.get("pipeline_args", [])
    counters = counter_values(label(config_from_argv(argv)))
    names = {contract.namespace_classifier(key[0]) for key in counters} - {None}
    per = [contract.classifier_namespace(n) for n in names]
    return {
        "real_tokens": sum(counters.get((namespace, "real_tokens"), 0) for namespace in per),
        "padded_tokens": sum(counters.get((namespace, "padded_tokens"), 0) for namespace in per),
        "inference_s": sum(counters.get((namespace, "inference_us"), 0) for namespace in per) / 1e6,
        "rows_written": counters.get((contract.METRICS_NAMESPACE, contract.ROWS_WRITTEN), 0),
    }


def _read_and_clean(path: str) -> list[dict]:
    from transforms.cleaning import clean_text

    with open(path, encoding="utf-8") as handle:
        posts = [json.loads(line) for line in handle if line.strip()]
    return [{"id": p["id"], "text": p["text"], "clean_text": clean_text(p["text"])} for p in posts]


def _write_parquet(rows: list[dict], classifiers: dict, output: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.labeling import output_schema
    from transforms.contract import shard_name

    schema = output_schema({}, classifiers)
    os.makedirs(output, exist_ok=True)
    table = pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema=schema)
    pq.write_table(table, os.path.join(output, shard_name(0, 1)))


def run_hf_loop(spec: dict) -> dict:
    """transformers' pipeline per classifier, batch_size 32, inputs in corpus order."""
    import numpy as np
    from transformers import pipeline

    from pipelines.labeling import load_classifiers

    rows = _read_and_clean(spec["input"])
    classifiers = load_classifiers(json.loads(Path(spec["models_file"]).read_text()))
    present = [row for row in rows if row["clean_text"]]
    texts = [row["clean_text"] for row in present]
    inference = 0.0
    for name, classifier in classifiers.items():
        pipe = pipeline("text-classification", model=classifier.checkpoint.local_dir,
                        device=0 if spec["device"] == "cuda" else "cpu")
        labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]
        started = time.perf_counter()
        outputs = pipe(texts, batch_size=HF_BATCH_SIZE, truncation=True, top_k=None, function_to_apply="none")
        inference += time.perf_counter() - started
        logits = np.array([[{d["label"]: d["score"] for d in out}[label] for label in labels] for out in outputs],
                          dtype=np.float32)
        for row, columns in zip(present, classifier.head.to_columns(logits)):
            row.update(columns)
        del pipe
    _write_parquet(rows, classifiers, spec["output"])
    return {"inference_s": inference, "rows_written": len(rows)}


def _stub_tensorflow() -> None:
    """Empty stand-ins for the TensorFlow names that Beam's huggingface_inference imports; its
    PyTorch pipeline path never calls them."""
    import importlib.machinery
    import types

    import torch._dynamo  # noqa: F401  (looks for an installed TensorFlow when imported: before the stand-in)
    import transformers
    from transformers import pipeline  # noqa: F401

    tf = types.ModuleType("tensorflow")
    tf.__spec__ = importlib.machinery.ModuleSpec("tensorflow", None)
    tf.Tensor = type("Tensor", (), {})
    tf.config = types.SimpleNamespace(list_physical_devices=lambda *a, **k: [])
    tf.stack = None
    sys.modules.setdefault("tensorflow", tf)
    for module in {id(m): m for m in (transformers, sys.modules["transformers"])}.values():
        if "TFAutoModel" not in vars(module):  # transformers 5 has no TensorFlow classes at all
            setattr(module, "TFAutoModel", type("TFAutoModel", (), {}))


def _scores_per_text(batch, pipe, inference_args):
    """The stock inference_fn (pipe(batch, **args)), with one list of label scores per text also
    for a batch of one (transformers then returns the scores unnested)."""
    outputs = pipe(list(batch), **inference_args)
    if len(batch) == 1 and outputs and isinstance(outputs[0], dict):
        outputs = [outputs]
    return outputs


def run_beam_hf(spec: dict) -> dict:
    """Beam's stock HuggingFacePipelineModelHandler, in the pipeline shape of ours: JSONL in,
    cleaned text, one RunInference per classifier, our heads, Parquet out."""
    if spec.get("stub_tensorflow"):
        _stub_tensorflow()
    from apache_beam.ml.inference.huggingface_inference import HuggingFacePipelineModelHandler

    import apache_beam as beam
    import numpy as np
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from pipelines.labeling import load_classifiers, output_schema
    from pipelines.runner import make_pipeline
    from transforms.cleaning import clean_text

    classifiers = load_classifiers(json.loads(Path(spec["models_file"]).read_text()))
    schema = output_schema({}, classifiers)

    def parse(line):
        post = json.loads(line)
        return {"id": post["id"], "text": post["text"], "clean_text": clean_text(post["text"])}

    def merge(keyed, head, labels):
        (row, _), prediction = keyed
        scores = {d["label"]: d["score"] for d in prediction.inference}
        logits = np.array([[scores[label] for label in labels]], dtype=np.float32)
        return {**row, **head.to_columns(logits)[0]}

    pipeline = make_pipeline([])
    rows = (pipeline | beam.io.ReadFromText(spec["input"]) | "Parse" >> beam.Map(parse))
    empty = {}
    for name, classifier in classifiers.items():
        handler = HuggingFacePipelineModelHandler(
            task="text-classification", model=classifier.checkpoint.local_dir,
            device="GPU" if spec["device"] == "cuda" else "CPU", max_batch_size=spec["batch_size"],
            inference_fn=_scores_per_text)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(classifier.checkpoint.local_dir)
        labels = [config.id2label[i] for i in range(config.num_labels)]
        rows_with_text, rows_without = (rows | f"Split_{name}" >> beam.Partition(
            lambda row, _: 0 if row["clean_text"] else 1, 2))
        labeled = (rows_with_text
                   | f"Key_{name}" >> beam.Map(lambda row: ((row, row["clean_text"]), row["clean_text"]))
                   | f"RunInference_{name}" >> RunInference(KeyedModelHandler(handler), inference_args={
                       "batch_size": HF_BATCH_SIZE, "truncation": True, "top_k": None, "function_to_apply": "none"})
                   | f"Merge_{name}" >> beam.Map(merge, classifier.head, labels))
        rows = (labeled, rows_without) | f"Join_{name}" >> beam.Flatten()
        empty.update(classifier.head.null_columns())
    _ = (rows
         | "Shape" >> beam.Map(lambda row: {n: row.get(n, empty.get(n)) for n in schema.names})
         | "Write" >> beam.io.WriteToParquet(os.path.join(spec["output"], "labels"), schema,
                                             file_name_suffix=".parquet"))
    pipeline.run().wait_until_finish()
    return {}


def child_main(spec_path: str) -> None:
    """Runs one contender and writes its measurements next to the spec."""
    import logging

    import torch
    import transformers  # noqa: F401  (imported before the clock starts, for every contender alike)

    logging.basicConfig(level=logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    spec = json.loads(Path(spec_path).read_text())
    from models.runtime import worker_cores

    torch.set_num_threads(spec.get("cpu_threads") or worker_cores())
    rss_before = peak_rss_mib()
    runner = {"hf-loop": run_hf_loop, "beam-hf": run_beam_hf, **dict.fromkeys(BARE, run_bare)}.get(spec["name"], run_ours)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    result = runner(spec)
    result["wall_s"] = time.perf_counter() - started
    result["cpu_s"] = cpu_seconds() - cpu_before
    result["peak_rss_mib"] = peak_rss_mib()
    result["rss_after_imports_mib"] = rss_before
    Path(spec["result"]).write_text(json.dumps(result))


def run_child(spec: dict, workdir: Path) -> dict:
    spec_path = workdir / f"spec-{spec['name']}-{spec['n']}.json"
    spec["result"] = str(workdir / f"result-{spec['name']}-{spec['n']}.json")
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--child", str(spec_path)],
                          env=env, cwd=str(HERE.parent), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        error = next((line for line in reversed(tail) if line.strip()), "failed")
        return {"error": error[:300], "stderr_tail": "\n".join(tail[-15:])}
    return json.loads(Path(spec["result"]).read_text())


# ---------------------------------------------------------------- comparing outputs

def read_scores(output: str) -> dict[str, dict[str, float]]:
    """id -> {float column: value} over every Parquet file of an output directory."""
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    scores: dict[str, dict[str, float]] = {}
    for path in sorted(glob.glob(os.path.join(output, "**", "*.parquet"), recursive=True)):
        table = pq.read_table(path)
        columns = [f.name for f in table.schema if pa.types.is_floating(f.type)]
        ids = table.column("id").to_pylist()
        values = {c: table.column(c).to_pylist() for c in columns}
        for i, row_id in enumerate(ids):
            scores[row_id] = {c: values[c][i] for c in columns}
    return scores


def read_labels_columns(output: str) -> dict[str, tuple]:
    """id -> the values of every label (non-float) column but the base ones, over an output's Parquet files."""
    import glob

    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.contract import BASE_COLUMNS

    labels: dict[str, tuple] = {}
    for path in sorted(glob.glob(os.path.join(output, "**", "*.parquet"), recursive=True)):
        table = pq.read_table(path)
        columns = [f.name for f in table.schema if not pa.types.is_floating(f.type) and f.name not in BASE_COLUMNS]
        values = {c: table.column(c).to_pylist() for c in columns}
        for i, row_id in enumerate(table.column("id").to_pylist()):
            labels[row_id] = tuple(values[c][i] for c in columns)
    return labels


def label_agreement(reference: dict, other: dict) -> float | None:
    """The share of the reference's posts whose labels all equal."""
    if not reference or set(reference) != set(other):
        return None
    return sum(other[row_id] == labels for row_id, labels in reference.items()) / len(reference)


def max_score_difference(reference: dict, other: dict) -> float | None:
    if not reference or set(reference) != set(other):
        return None
    worst = 0.0
    for row_id, columns in reference.items():
        for column, value in columns.items():
            theirs = other[row_id].get(column)
            if value is None and theirs is None:
                continue
            if value is None or theirs is None:
                return float("inf")
            worst = max(worst, abs(value - theirs))
    return worst


# ---------------------------------------------------------------- report

def summarize(name: str, result: dict, n_posts: int, profile: dict, peak: float) -> dict:
    if "error" in result or "skipped" in result:
        return {"contender": name, **result}
    real = sum(p["real_tokens"] for p in profile.values())
    flops = sum(p["useful_flops"] for p in profile.values())
    if name == "hf-loop":
        padded = sum(p["hf_loop_padded_tokens"] for p in profile.values())
    else:
        padded = result.get("padded_tokens")
    row = {"contender": name, "wall_s": result["wall_s"], "texts_per_s": n_posts / result["wall_s"],
           "real_tokens_per_s": real / result["wall_s"],
           "padding_efficiency": (real / padded) if padded else None,
           "peak_rss_mib": result["peak_rss_mib"], "inference_s": result.get("inference_s"),
           "peak_fraction_inference": (flops / (result["inference_s"] * peak)) if result.get("inference_s") else None,
           "peak_fraction_wall": flops / (result["wall_s"] * peak)}
    if name in ("ours-int8", "ours-ov-int8"):  # int8 matmuls: no float peak to hold them against
        row["peak_fraction_inference"] = row["peak_fraction_wall"] = None
    return row


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def print_table(rows: list[dict], ours_speed: float | None) -> None:
    header = (f"{'contender':<15}{'wall s':>8}{'texts/s':>9}{'tokens/s':>10}{'pad eff':>8}{'peak RSS':>10}"
              f"{'x ours':>8}{'%peak inf':>10}{'%peak wall':>11}{'max|dscore|':>12}{'x hf-loop':>10}"
              f"{'of bare':>8}{'agree':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "wall_s" not in row:
            reason = row.get("skipped") or row.get("error")
            print(f"{row['contender']:<15}  {reason}")
            continue
        ratio = row["texts_per_s"] / ours_speed if ours_speed else None
        print(f"{row['contender']:<15}{row['wall_s']:>8.1f}{row['texts_per_s']:>9.1f}{row['real_tokens_per_s']:>10.0f}"
              f"{_fmt(row['padding_efficiency'], '.3f'):>8}{row['peak_rss_mib']:>8.0f}Mi"
              f"{_fmt(ratio, '.2f'):>8}{_fmt(row['peak_fraction_inference'] and 100 * row['peak_fraction_inference'], '.1f'):>10}"
              f"{_fmt(row['peak_fraction_wall'] and 100 * row['peak_fraction_wall'], '.1f'):>11}"
              f"{_fmt(row.get('max_score_diff_vs_ours'), '.2e', '-'):>12}{_fmt(row.get('x_hf_loop'), '.2f', '-'):>10}"
              f"{_fmt(row.get('share_of_bare'), '.2f', '-'):>8}{_fmt(row.get('label_agreement'), '.2%', '-'):>8}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000, help="posts to label (default 4000)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                        help="JSONL(.gz) with id and text (default: ../shared/corpora/social_posts.jsonl.gz when "
                             "present, else a generated corpus with its length profile)")
    parser.add_argument("--scale", choices=("small", "real", "tiny"), default="real",
                        help="checkpoint shapes: the real architectures, shrunk ones for quick runs, or toy "
                             "ones for smoke runs and memory checks")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated, from {','.join(CONTENDERS + EXTRAS)}")
    parser.add_argument("--extra", default="", help=f"more contenders, e.g. {','.join(EXTRAS)}")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default): cuda when torch sees one, as the pipeline and training decide")
    parser.add_argument("--batch-size", type=int, default=1024, help="texts per RunInference batch (ours)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=None)
    parser.add_argument("--max-items-per-batch", type=int, default=None)
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--pipeline-args", default="", help="more options for ours, e.g. '--length-buckets 64,128'")
    parser.add_argument("--memory-scale", type=int, default=0,
                        help="also run ours on N x this many posts and compare peak RSS (e.g. 10)")
    parser.add_argument("--stub-tensorflow", action="store_true",
                        help="let beam-hf import without TensorFlow (stand-ins for the TF names it imports)")
    parser.add_argument("--cache", default=None, help="checkpoint cache (default ~/.cache/label_corpus_bench)")
    parser.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--overhead", action="store_true",
                        help="the CPU cost per post outside the models: tiny checkpoints, 20,000 posts (unless "
                             "--n), ours only, --cpu-threads 1 (unless given), and the time per stage")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.overhead:
        args.scale, args.contenders, args.extra = "tiny", "ours", ""
        args.n = args.n if "--n" in (argv or sys.argv) else 20_000
        args.cpu_threads = args.cpu_threads or 1
    return args


# ---------------------------------------------------------------- overhead mode: time per stage

def pipeline_cuts(checkpoints: dict[str, str]) -> tuple[int, dict[str, int]]:
    """Where the pipeline cuts, from models.runtime: how many tokens' worth of each text it cleans,
    and each classifier's token limit (what its tokenizer truncates to)."""
    from models.checkpoints import load_config_dict, load_tokenizer
    from models.runtime import clean_token_limit, token_limit

    configs = {name: load_config_dict(path) for name, path in checkpoints.items()}
    limits = {name: token_limit(load_tokenizer(path), configs[name]) for name, path in checkpoints.items()}
    return clean_token_limit(configs.values()), limits


def stage_times(input_path: Path, checkpoints: dict[str, str]) -> dict[str, float]:
    """Seconds each stage of the job takes on its own, on these posts, through the same pure
    functions the pipeline runs (no Beam): read (parse + records), clean, language, tokenize (each
    classifier's fast tokenizer, batches of 1024, cut as the pipeline cuts) and write (an Arrow
    table from the row dicts + Parquet). The model's time is the pipeline's own forward-pass
    counter; what the end-to-end time adds to the sum is start-up (imports, model loading) and
    Beam's per-element work: batching, inference bookkeeping, merging, fusion."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from models.checkpoints import load_tokenizer
    from transforms.cleaning import CleaningOptions, clean_for_models
    from transforms.language import post_languages
    from transforms.records import DeadLetter, FieldMap, iter_file_records, to_record

    times: dict[str, float] = {}
    clock = time.perf_counter()
    with open(input_path, "rb") as stream:
        items = [item for item in iter_file_records(str(input_path), stream) if not isinstance(item, DeadLetter)]
    rows = [to_record(value, FieldMap(), {}, str(input_path), position, raw) for position, value, raw in items]
    times["read"] = time.perf_counter() - clock
    clock = time.perf_counter()
    clean_limit, token_limits = pipeline_cuts(checkpoints)
    options = CleaningOptions()
    for row in rows:
        row["clean_text"] = clean_for_models(row["text"], clean_limit, options)
    times["clean"] = time.perf_counter() - clock
    clock = time.perf_counter()
    for start in range(0, len(rows), 1024):  # as the pipeline detects: a RunInference batch at once
        batch = rows[start:start + 1024]
        for row, lang in zip(batch, post_languages([row["text"] for row in batch])):
            row["lang"] = lang
    times["language"] = time.perf_counter() - clock
    texts = [row["clean_text"] for row in rows if row["clean_text"]]
    times["tokenize"] = 0.0
    for name, path in checkpoints.items():
        tokenizer = load_tokenizer(path)
        clock = time.perf_counter()
        for start in range(0, len(texts), 1024):
            tokenizer(texts[start:start + 1024], truncation=True, max_length=token_limits[name],
                      return_attention_mask=False)
        times["tokenize"] += time.perf_counter() - clock
    clock = time.perf_counter()
    pq.write_table(pa.Table.from_pylist(rows), input_path.with_suffix(".stages.parquet"))
    times["write"] = time.perf_counter() - clock
    return times


def quiet_offline_transformers() -> None:
    """No hub, no tokenizer thread pools fighting the contenders, no transformers chatter."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def prepare_posts(args, workdir_prefix: str) -> tuple[Path, list[dict], str, Path, list[str]]:
    """The run's work directory, the --n posts, what they are, their JSONL input file, and the
    texts that are not empty after cleaning."""
    from transforms.cleaning import clean_text

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix=workdir_prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    posts, corpus_note = load_posts(args.corpus, args.n)
    input_path = workdir / f"posts-{args.n}.jsonl"
    write_jsonl(posts, input_path)
    present = [t for t in (clean_text(p["text"]) for p in posts) if t]
    return workdir, posts, corpus_note, input_path, present


def prepare_checkpoints(args, posts: list[dict], workdir: Path) -> tuple[dict[str, str], Path]:
    """The benchmark checkpoints at --scale (built or cached) and the models.json naming them.
    Tokenizers are trained on a fixed sample (the first TOKENIZER_SAMPLE posts), whatever --n is,
    so that every run at a scale shares the same checkpoints."""
    from benchmarks.checkpoints import build_all
    from transforms.cleaning import clean_text

    sample = posts if len(posts) >= TOKENIZER_SAMPLE else load_posts(args.corpus, TOKENIZER_SAMPLE)[0]
    training = [t for t in (clean_text(p["text"]) for p in sample[:TOKENIZER_SAMPLE]) if t]
    checkpoints = build_all(args.scale, training, Path(args.cache) if args.cache else None)
    models_file = workdir / "models.json"
    models_file.write_text(json.dumps(checkpoints))
    return checkpoints, models_file


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    import torch

    from models.runtime import pick_device, worker_cores

    quiet_offline_transformers()
    device = pick_device(args.device)  # the pipeline's rule (models.runtime)
    torch.set_num_threads(args.cpu_threads or worker_cores())
    workdir, posts, corpus_note, input_path, present = prepare_posts(args, "throughput-")
    started = time.perf_counter()
    checkpoints, models_file = prepare_checkpoints(args, posts, workdir)
    print(f"checkpoints ({args.scale}): {Path(next(iter(checkpoints.values()))).parent} "
          f"[{time.perf_counter() - started:.0f}s]", flush=True)
    profile = token_profile(checkpoints, args.scale, present)
    peaks = {"fp32": matmul_peak(device, "fp32"), "bf16": matmul_peak(device, "bf16")}
    main_dtype = "bf16" if device == "cuda" else "fp32"
    print(f"device: {device_name(device)}; matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s", flush=True)
    print(f"corpus: {corpus_note}; {len(present)} non-empty after cleaning", flush=True)

    names = [c for c in (args.contenders + "," + args.extra).split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONTENDERS + EXTRAS))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}")
    base_spec = {"input": str(input_path), "models_file": str(models_file), "device": device,
                 "batch_size": args.batch_size, "max_tokens": args.max_tokens_per_batch,
                 "max_items": args.max_items_per_batch, "cpu_threads": args.cpu_threads, "n": args.n,
                 "pipeline_args": args.pipeline_args.split(), "stub_tensorflow": args.stub_tensorflow}
    if device == "cpu" and any(backend_of(name) == "openvino" for name in names):
        prepare_openvino(checkpoints, args, "ours-ov-int8" in names)
    results: dict[str, dict] = {}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for name in names:
        if name in EXTRAS and device == "cuda":
            results[name] = {"skipped": "CPU-only option (CUDA runs bf16/fp16 autocast)"}
            continue
        if name == "beam-hf" and not args.stub_tensorflow:
            problem = beam_hf_import_problem()
            if problem:
                results[name] = {"skipped": f"not importable here ({problem}); --stub-tensorflow times it anyway"}
                print(f"{name}: skipped: {results[name]['skipped']}", flush=True)
                continue
        output = workdir / f"out-{name}-{args.n}"
        result = run_child({**base_spec, "name": name, "output": str(output)}, workdir)
        result["output"] = str(output)
        results[name] = result
        print(f"{name}: " + (f"{result['wall_s']:.1f}s" if "wall_s" in result else f"error: {result['error']}"),
              flush=True)

    score_reference = "ours-torch" if "wall_s" in results.get("ours-torch", {}) else "ours"
    reference = read_scores(results[score_reference]["output"]) if "wall_s" in results.get(score_reference, {}) else {}
    reference_labels = read_labels_columns(results[score_reference]["output"]) if reference else {}
    peak = peaks[main_dtype]
    rows = []
    hf_speed = len(posts) / results["hf-loop"]["wall_s"] if "wall_s" in results.get("hf-loop", {}) else None
    bare_speed = {BARE[name]: len(posts) / results[name]["inference_s"] for name in BARE
                  if "inference_s" in results.get(name, {})}
    for name, result in results.items():
        row = summarize(name, result, len(posts), profile, peaks["bf16"] if "bf16" in name else peak)
        if name in BARE and "inference_s" in result:  # the forward passes alone: its time is theirs
            row.update(wall_s=result["inference_s"], texts_per_s=bare_speed[BARE[name]], padding_efficiency=None)
        if "wall_s" in result and name not in BARE:
            if name != score_reference and reference:
                row["max_score_diff_vs_ours"] = max_score_difference(reference, read_scores(result["output"]))
            if name != "hf-loop" and reference_labels:
                row["label_agreement"] = label_agreement(reference_labels, read_labels_columns(result["output"]))
            if hf_speed:
                row["x_hf_loop"] = row["texts_per_s"] / hf_speed
            if backend_of(name) in bare_speed and name.startswith("ours"):
                row["share_of_bare"] = row["texts_per_s"] / bare_speed[backend_of(name)]
        rows.append(row)

    memory = None
    if args.memory_scale > 1 and "wall_s" in results.get("ours", {}):
        big_n = args.n * args.memory_scale
        big_posts, _ = load_posts(args.corpus, big_n)
        big_input = workdir / f"posts-{big_n}.jsonl"
        write_jsonl(big_posts, big_input)
        big = run_child({**base_spec, "name": "ours", "n": big_n, "input": str(big_input),
                         "output": str(workdir / f"out-ours-{big_n}")}, workdir)
        if "wall_s" in big:
            small_peak = results["ours"]["peak_rss_mib"]
            memory = {"n": args.n, "peak_rss_mib": small_peak, "big_n": big_n, "big_peak_rss_mib": big["peak_rss_mib"],
                      "growth": big["peak_rss_mib"] / small_peak - 1, "big_wall_s": big["wall_s"],
                      "big_texts_per_s": big_n / big["wall_s"]}
        else:
            memory = {"error": big["error"]}

    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads = args.cpu_threads or worker_cores()
    ours_speed = next((r["texts_per_s"] for r in rows if r["contender"] == "ours" and "texts_per_s" in r), None)
    print()
    print(f"{len(posts)} posts, {len(checkpoints)} classifiers ({', '.join(checkpoints)}), scale {args.scale}, "
          f"device {device}, ours with batch {args.batch_size}"
          + (f", {threads} torch thread(s) per contender" if device == "cpu" else ""))
    if load_before is not None:
        print(f"machine load (1-min average) {load_before:.1f} before the contenders, {load_after:.1f} after; "
              "with other work on the CPU every figure drops, multi-threaded passes the most")
    print_table(rows, ours_speed)
    print(f"%peak: useful (unpadded) FLOPs / (seconds x measured {main_dtype} matmul peak "
          f"{peak / 1e9:.0f} GFLOP/s; ours-bf16 against the bf16 peak {peaks['bf16'] / 1e9:.0f}); "
          "'inf' over forward-pass time (ours) or pipeline-call time (hf-loop), 'wall' over the whole run; "
          "none for int8")
    print("hf-loop padding efficiency: computed from its corpus-order batches of 32; "
          f"max|dscore|: largest difference from {score_reference} over every score column; agree: share of posts "
          f"whose labels all equal {score_reference}'s; of bare: texts/s over the bare loop of the same backend "
          "(bare rows: forward passes only)")
    default = next((r for r in rows if r["contender"] == "ours" and "texts_per_s" in r), None)
    if default and device == "cpu":
        print(f"targets, the default CPU run (ours): >= {TARGET_X_HF_LOOP:g}x the transformers pipeline loop end to end: "
              f"{_fmt(default.get('x_hf_loop'), '.2f')}x; >= {TARGET_SHARE_OF_BARE:g} of its own bare loop: "
              f"{_fmt(default.get('share_of_bare'), '.2f')}")
    if args.overhead and "wall_s" in results.get("ours", {}):
        ours = results["ours"]
        wall = ours["wall_s"]
        stages = {**stage_times(input_path, checkpoints), "model (in the pipeline)": ours["inference_s"]}
        print(f"overhead mode: ours labels {len(posts):,} posts in {wall:.1f}s = {len(posts) / wall:,.0f} posts/s end "
              f"to end ({threads} torch thread(s))")
        if "cpu_s" in ours:
            print(f"CPU time, all threads: {ours['cpu_s']:.1f}s = {1e6 * ours['cpu_s'] / len(posts):,.0f} us/post "
                  f"({ours['cpu_s'] / wall:.2f} cores busy on average); outside the forward passes "
                  f"{1e6 * (ours['cpu_s'] - ours['inference_s']) / len(posts):,.0f} us/post")
        print("stage (alone, no Beam)   seconds   us/post")
        for stage, seconds in stages.items():
            print(f"  {stage:<22} {seconds:7.2f}  {1e6 * seconds / len(posts):8.0f}")
        rest = wall - sum(stages.values())
        print(f"  {'the rest (Beam, start)':<22} {rest:7.2f}  {1e6 * rest / len(posts):8.0f}   (end to end less the above)")
    tokenize = sum(p["tokenize_s"] for p in profile.values())
    shared = {}
    for name, p in profile.items():
        shared.setdefault(p["tokenizer_digest"], []).append(name)
    sharing = [names for names in shared.values() if len(names) > 1]
    ours_wall = results.get("ours", {}).get("wall_s")
    print(f"tokenization (fast tokenizers, all texts): {tokenize:.2f}s over {len(profile)} classifiers"
          + (f" = {100 * tokenize / ours_wall:.1f}% of ours' wall time" if ours_wall else "")
          + (f"; identical tokenizers: {sharing}" if sharing else "; no two classifiers share a tokenizer"))
    if memory:
        if "error" in memory:
            print(f"memory: the run on {args.n * args.memory_scale} posts failed: {memory['error']}")
        else:
            print(f"memory: ours peaks at {memory['peak_rss_mib']:.0f} MiB on {memory['n']} posts and "
                  f"{memory['big_peak_rss_mib']:.0f} MiB on {memory['big_n']} ({100 * memory['growth']:+.1f}%; "
                  f"{memory['big_texts_per_s']:.1f} texts/s)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": len(posts), "corpus": corpus_note, "scale": args.scale, "device": device,
            "device_name": device_name(device), "matmul_peak_flops": peaks, "batch_size": args.batch_size,
            "torch_threads": threads if device == "cpu" else None, "load_average": [load_before, load_after],
            "profile": profile, "contenders": rows, "memory": memory,
            "raw": {k: {kk: vv for kk, vv in v.items() if kk != "stderr_tail"} for k, v in results.items()},
        }, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


def prepare_openvino(checkpoints: dict[str, str], args, int8: bool) -> None:
    """Each checkpoint's OpenVINO IR converted (and int8 calibrated on CALIBRATION_POSTS posts after the
    measured ones) before any contender's clock starts: a worker's cache after the first run."""
    from models.checkpoints import load_weights, resolve
    from models.export import export_int8
    from models.openvino_backend import cache_entry, cached_ir, convert
    from transforms.cleaning import clean_text

    started = time.perf_counter()
    calibration = [t for t in (clean_text(p["text"]) for p in load_posts(args.corpus, args.n + CALIBRATION_POSTS)[0]
                                 [args.n:]) if t] if int8 else []
    for name, path in checkpoints.items():
        checkpoint = resolve(name, path)
        cached_ir(cache_entry(checkpoint.local_dir, checkpoint.revision, "fp32"), lambda: convert(load_weights(path)))
        if int8:
            export_int8(checkpoint.local_dir, checkpoint.revision, calibration)
    print(f"OpenVINO models converted{' and int8 calibrated' if int8 else ''} (not timed): "
          f"{time.perf_counter() - started:.0f}s", flush=True)


def beam_hf_import_problem() -> str | None:
    """None when Beam's HuggingFace handler module imports here, else why not (in a child, so that a
    half-imported TensorFlow stays out of this process)."""
    code = "import apache_beam.ml.inference.huggingface_inference"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "import failed"


if __name__ == "__main__":
    sys.exit(main())

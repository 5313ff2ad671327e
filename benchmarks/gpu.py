"""The GPU measurements: how close the job comes to what the GPU can do.

    python -m benchmarks.gpu [--n 20000] [--scale real] [--workers 1,4] [--contenders ours,hf-loop]
        [--json gpu.json]

On the same posts and the same checkpoints (benchmarks/checkpoints.py), in one run:

- peak: the GPU's measured bf16 matrix-multiply rate (large square products of random non-zero
  inputs, rotated among several input sets, warm-up first, CUDA events, median of the repeats).
- bare (always): the limit. Per classifier, a plain transformers model under bf16 autocast over the texts
  tokenized, sorted by length, cut by a token budget and padded ahead of time (already on the
  GPU): only the forward passes are timed.
- ours: pipelines.label_corpus end to end (JSONL in, Parquet out) on the DirectRunner, once per
  worker count (1 = in memory, N = multi_processing with N workers and the model shared).
- hf-loop: transformers' pipeline per classifier, batch 32, corpus order (benchmarks.throughput).

Printed per classifier and for all four: posts/s, real tokens/s, useful TFLOP/s and their share of
the measured peak, padding efficiency, GPU busy share (sampled every 200 ms), peak GPU memory;
then the targets (TARGETS below: the bare passes' share of the peak, ours against bare and against hf-loop).
Useful FLOPs come from each checkpoint's config.json: 2 x the dense layers' weights per real token,
attention per real token pair, the head per post; padding counts for nothing.

Runs on CPU too (fp32 against the fp32 matmul peak), which is how its pieces are tested here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
TARGETS = {"bare_share_of_peak": 0.40, "ours_over_bare": 0.8, "ours_over_hf_loop": 5.0}


# ---------------------------------------------------------------- useful FLOPs from a config

def shape_from_config(config: dict):
    """The encoder's shape (benchmarks.checkpoints.Shape) from a Hugging Face config.json."""
    from benchmarks.checkpoints import Shape

    if config.get("model_type") == "distilbert":
        return Shape("distilbert", config["dim"], config["n_layers"], config["n_heads"], config["hidden_dim"],
                     config["vocab_size"])
    return Shape(config.get("model_type", "bert"), config["hidden_size"], config["num_hidden_layers"],
                 config["num_attention_heads"], config["intermediate_size"], config["vocab_size"])


def flops_from_config(config: dict, lengths: Sequence[int]) -> float:
    """Useful FLOPs of unpadded forward passes over texts of these token lengths."""
    from benchmarks.checkpoints import useful_flops

    return useful_flops(shape_from_config(config), lengths, len(config["id2label"]))


# ---------------------------------------------------------------- the measured matmul peak

def matmul_peak(device: str = "cuda", dtype_name: str = "bf16", sizes: Sequence[int] = (8192, 16384),
                repeats: int = 20, warmup: int = 3, input_sets: int = 3) -> dict:
    """FLOP/s of square matrix products: per size the median over `repeats` timed products
    (CUDA events on a GPU), inputs random normal (never zeros) rotated among `input_sets` pairs so
    that no repeat reads what the previous one left in cache; the best size's median is the peak."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    per_size = {}
    for n in sizes:
        pairs = [(torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device))
                 for _ in range(input_sets)]
        for i in range(warmup):
            pairs[i % input_sets][0] @ pairs[i % input_sets][1]
        seconds = []
        for i in range(repeats):
            a, b = pairs[i % input_sets]
            seconds.append(_timed(lambda: a @ b, device))
        per_size[n] = 2 * n ** 3 / statistics.median(seconds)
        del pairs
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"flops": max(per_size.values()), "per_size": per_size, "dtype": dtype_name,
            "repeats": repeats, "method": "median of CUDA-event-timed products" if device == "cuda" else
            "median of perf_counter-timed products"}


def _timed(fn, device: str) -> float:
    import torch

    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ---------------------------------------------------------------- GPU busy share and memory, sampled

def parse_smi_line(line: str) -> tuple[float, float] | None:
    """(utilization %, memory used MiB) from a line of `nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits`; None for anything else ('[N/A]', blank lines, headers)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 2:
        return None
    try:
        utilization, memory = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not 0 <= utilization <= 100 or memory < 0:
        return None
    return utilization, memory


class GpuSampler:
    """Samples the GPU's utilization and used memory every interval while in a `with` block:
    through pynvml when it imports, else `nvidia-smi ... --loop-ms` in a subprocess. Without either,
    summary() says so and gives no figures. Memory is the whole GPU's (every process's), so a model
    served from another process counts too."""

    def __init__(self, interval_ms: int = 200, index: int = 0, smi: str = "nvidia-smi"):
        self.interval_ms, self.index, self.smi = interval_ms, index, smi
        self.samples: list[tuple[float, float]] = []
        self.source = None
        self._stop = threading.Event()
        self._thread = None
        self._proc = None

    def __enter__(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.source = "pynvml"
            self._thread = threading.Thread(target=self._poll_nvml, args=(pynvml, handle), daemon=True)
        except Exception:  # noqa: BLE001 - no pynvml, or no driver behind it: try nvidia-smi
            if shutil.which(self.smi):
                self.source = "nvidia-smi"
                self._proc = subprocess.Popen(
                    [self.smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                     f"--loop-ms={self.interval_ms}", f"--id={self.index}"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                self._thread = threading.Thread(target=self._read_smi, daemon=True)
        if self._thread is not None:
            self._thread.start()
        return self

    def _poll_nvml(self, pynvml, handle) -> None:
        while not self._stop.is_set():
            utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2 ** 20
            self.samples.append((float(utilization), float(memory)))
            self._stop.wait(self.interval_ms / 1e3)

    def _read_smi(self) -> None:
        for line in self._proc.stdout:
            sample = parse_smi_line(line)
            if sample is not None:
                self.samples.append(sample)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict:
        if not self.samples:
            return {"source": self.source, "samples": 0, "busy_share": None, "peak_memory_mib": None}
        return {"source": self.source, "samples": len(self.samples),
                "busy_share": statistics.fmean(u for u, _ in self.samples) / 100,
                "peak_memory_mib": max(m for _, m in self.samples)}


# ---------------------------------------------------------------- the bare length-sorted loop

def length_sorted_batches(lengths: Sequence[int], max_tokens: int, max_items: int,
                          min_fill: float = 0.8) -> list[list[int]]:
    """Indices sorted by token length (longest first), cut greedily: a batch ends before the text
    that would take its rows x longest member over max_tokens (a longer text alone gets a batch of
    its own), its rows over max_items, or that is shorter than min_fill x its longest member (so
    padding stays under 1 - min_fill of every batch's tokens)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for i in order:
        if current:
            width = lengths[current[0]]
            if ((len(current) + 1) * width > max_tokens or len(current) >= max_items
                    or lengths[i] < min_fill * width):
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def bare_loop(checkpoint: str, texts: Sequence[str], device: str, max_tokens: int = 65_536,
              max_items: int = 1024, min_seconds: float = 0.0) -> dict:
    """A plain transformers model over `texts` in length-sorted, budget-cut, padded batches placed
    on the device ahead of time; only the forward passes are timed (bf16 autocast on CUDA, fp32 on
    CPU): after a warm-up sweep (CUDA), sweeps over all texts until min_seconds have passed, and
    the median sweep. Returns its seconds, the token counts, the peak memory the passes allocated
    and the GPU's busy share during the sweeps (CUDA), and the logits in input order."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.runtime import token_limit

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, attn_implementation="sdpa")
    model = model.eval().to(device)
    max_length = token_limit(tokenizer, model.config.to_dict())
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = [len(x) for x in encoded["input_ids"]]
    batches = length_sorted_batches(lengths, max_tokens, max_items)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    pad = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
    inputs = []
    for batch in batches:
        width = max(lengths[i] for i in batch)
        arrays = {k: np.full((len(batch), width), pad[k], dtype=np.int64) for k in keys}
        for row, i in enumerate(batch):
            for k in keys:
                arrays[k][row, :lengths[i]] = encoded[k][i]
        inputs.append({k: torch.from_numpy(v).to(device) for k, v in arrays.items()})
    dtype = torch.bfloat16 if device == "cuda" else None

    def passes():
        with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            return [model(**batch_inputs).logits for batch_inputs in inputs]

    if device == "cuda":
        passes()  # warm-up: kernels chosen, memory pool grown
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sweeps: list[float] = []
    with GpuSampler() as sampler:  # over the timed sweeps only
        while not sweeps or sum(sweeps) < min_seconds:
            started = time.perf_counter()
            outputs = passes()
            if device == "cuda":
                torch.cuda.synchronize()
            sweeps.append(time.perf_counter() - started)
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for batch, out in zip(batches, outputs):
        logits[batch] = out.float().cpu().numpy()
    peak_memory = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None
    return {"seconds": statistics.median(sweeps), "sweeps": len(sweeps), "lengths": lengths,
            "real_tokens": sum(lengths), "padded_tokens": sum(len(b) * max(lengths[i] for i in b) for b in batches),
            "passes": len(batches), "peak_memory_mib": peak_memory, "busy_share": sampler.summary()["busy_share"],
            "logits": logits}


# ---------------------------------------------------------------- ours, in a child process

def run_ours_child(spec_path: str) -> None:
    """pipelines.label_corpus.run(argv) timed end to end; its counters per classifier."""
    import transformers  # noqa: F401  (imported before the clock starts, as for benchmarks.throughput)

    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()  # Beam's import counts, as in benchmarks.throughput
    from pipelines.label_corpus import run
    from pipelines.labeling import counter_values
    from transforms import contract

    counters = counter_values(run(spec["argv"]))
    wall = time.perf_counter() - started
    per = {}
    for (namespace, name), value in counters.items():
        if contract.namespace_classifier(namespace) is not None:
            per.setdefault(contract.namespace_classifier(namespace), {})[name] = value
    rows_written = counters.get((contract.METRICS_NAMESPACE, contract.ROWS_WRITTEN))
    Path(spec["result"]).write_text(json.dumps({"wall_s": wall, "per_classifier": per, "rows_written": rows_written}))


def ours(input_path: str, models_file: str, output: str, device: str, workers: int, workdir: Path,
         extra: Sequence[str] = ()) -> dict:
    mode = (["--direct_running_mode", "in_memory"] if workers <= 1 else
            ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers)])
    spec = {"argv": ["--input", input_path, "--output", output, "--models", models_file, "--device", device,
                     "--all-languages", *mode, *extra],
            "result": str(workdir / f"result-ours-{workers}.json")}
    spec_path = workdir / f"spec-ours-{workers}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--child", str(spec_path)], env=env,
                          cwd=str(HERE.parent), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": next((line for line in reversed(tail) if line.strip()), "failed")[:300],
                "stderr_tail": "\n".join(tail[-15:])}
    return json.loads(Path(spec["result"]).read_text())


# ---------------------------------------------------------------- figures

def figures(posts: int, seconds: float, real_tokens: int, padded_tokens: int | None, flops: float,
            peak: float) -> dict:
    return {"seconds": seconds, "posts_per_s": posts / seconds, "tokens_per_s": real_tokens / seconds,
            "useful_tflops": flops / seconds / 1e12, "share_of_peak": flops / seconds / peak,
            "padding_efficiency": real_tokens / padded_tokens if padded_tokens else None}


def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets against the all-four rows: the bare loop's share of the peak (its
    summed forward-pass time), ours over bare and ours over hf-loop in posts/s."""
    best = {}
    for row in rows:
        if row["classifier"] == "all four" and row.get("posts_per_s"):
            kind = row["contender"].split(" ")[0]
            if kind not in best or row["posts_per_s"] > best[kind]["posts_per_s"]:
                best[kind] = row
    lines = []

    def line(what, value, target, fmt):
        verdict = "n/a" if value is None else ("MET" if value >= target else "MISSED")
        shown = "n/a" if value is None else format(value, fmt)
        lines.append(f"  {what:<48}{shown:>10}   target >= {format(target, fmt)}   {verdict}")

    bare, ours_row, hf = best.get("bare"), best.get("ours"), best.get("hf-loop")
    line("bare loop: useful FLOPs / measured peak", bare and bare["share_of_peak"],
         TARGETS["bare_share_of_peak"], ".1%")
    line(f"ours ({ours_row['contender'] if ours_row else '-'}) / bare loop, posts/s",
         ours_row and bare and ours_row["posts_per_s"] / bare["posts_per_s"], TARGETS["ours_over_bare"], ".2f")
    line("ours / hf-loop, posts/s", ours_row and hf and ours_row["posts_per_s"] / hf["posts_per_s"],
         TARGETS["ours_over_hf_loop"], ".2f")
    return lines


# Dense bf16 datasheet rates (FLOP/s), by a substring of torch.cuda.get_device_name(), first match wins.
DATASHEET_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("L4", 121e12), ("A100", 312e12))


def datasheet_bf16(device_name: str) -> float | None:
    return next((rate for key, rate in DATASHEET_BF16 if key in device_name), None)


def l4_estimate(posts: int, wall_s: float, forward_s: float, measured_on: str, l4_vcpus: int = 8) -> dict | None:
    """Posts/s one Dataflow worker (g2-standard-8, one L4) should reach, from ours in memory (w=1,
    where forward passes and host work run one after the other) on another GPU: the slower of
    - GPU-bound: the forward time scaled by the two datasheet bf16 rates (assumes the L4 reaches the
      same share of its datasheet rate as the measured GPU did of its own), and
    - host-bound: the posts/s of everything but the forward passes, times the worker's vCPUs (one
      SDK process each, sharing the GPU). None when the measured GPU has no datasheet figure."""
    rate_here, rate_l4 = datasheet_bf16(measured_on), datasheet_bf16("L4")
    if rate_here is None or forward_s <= 0 or wall_s <= forward_s:
        return None
    gpu_bound = posts / (forward_s * rate_here / rate_l4)
    host_bound = l4_vcpus * posts / (wall_s - forward_s)
    return {"posts_per_s": min(gpu_bound, host_bound), "gpu_bound": gpu_bound, "host_bound": host_bound,
            "bound_by": "gpu" if gpu_bound <= host_bound else "host", "measured_on": measured_on}


def corpus_order_padded(lengths: Sequence[int], batch: int = 32) -> int:
    """Tokens a corpus-order loop in batches of `batch` pads to (each batch to its longest)."""
    return sum(len(lengths[i:i + batch]) * max(lengths[i:i + batch]) for i in range(0, len(lengths), batch))


def print_table(rows: list[dict]) -> None:
    header = (f"{'contender':<14}{'classifier':<11}{'basis':<9}{'posts/s':>10}{'tokens/s':>12}{'TFLOP/s':>9}"
              f"{'%peak':>7}{'pad eff':>8}{'busy%':>6}{'GPU MiB':>9}")
    print(header)
    print("-" * len(header))

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    for r in rows:
        if "error" in r:
            print(f"{r['contender']:<14}{r['classifier']:<11}error: {r['error']}")
            continue
        print(f"{r['contender']:<14}{r['classifier']:<11}{r['basis']:<9}{r['posts_per_s']:>10.0f}"
              f"{r['tokens_per_s']:>12.0f}{r['useful_tflops']:>9.2f}{100 * r['share_of_peak']:>6.1f}%"
              f"{fmt(r['padding_efficiency'], '.3f'):>8}{fmt(r.get('busy_share') and 100 * r['busy_share'], '.0f'):>6}"
              f"{fmt(r.get('peak_memory_mib'), '.0f'):>9}")


def run_bare(checkpoints: dict, configs: dict, texts: list[str], device: str, peak: float, max_tokens: int,
             max_items: int, rows: list[dict], profile: dict[str, dict], saved=lambda: None) -> None:
    """The bare loop per classifier and for all four: its table rows appended to `rows`, and per
    classifier the real tokens and useful FLOPs of `texts` (which every other row is held against)
    in `profile`; saved() after each classifier, so that a run cut short keeps those measured."""
    totals = {"seconds": 0.0, "real": 0, "padded": 0, "flops": 0.0}
    for name, path in checkpoints.items():
        result = bare_loop(path, texts, device, max_tokens, max_items, min_seconds=2.0 if device == "cuda" else 0)
        if device == "cuda":  # the model and its inputs are gone with bare_loop's frame: hand their memory back
            import torch

            torch.cuda.empty_cache()
        flops = flops_from_config(configs[name], result["lengths"])
        profile[name] = {"real_tokens": result["real_tokens"], "useful_flops": flops,
                         "hf_loop_padded_tokens": corpus_order_padded(result["lengths"])}
        row = {"contender": "bare", "classifier": name, "basis": "forward",
               **figures(len(texts), result["seconds"], result["real_tokens"], result["padded_tokens"],
                         flops, peak),
               "busy_share": result["busy_share"], "peak_memory_mib": result["peak_memory_mib"]}
        rows.append(row)
        totals["seconds"] += result["seconds"]
        totals["real"] += result["real_tokens"]
        totals["padded"] += result["padded_tokens"]
        totals["flops"] += flops
        print(f"bare {name}: {result['seconds']:.2f}s a sweep of {result['passes']} passes (median of "
              f"{result['sweeps']})", flush=True)
        del result
        saved()
    rows.append({"contender": "bare", "classifier": "all four", "basis": "forward",
                 **figures(len(texts), totals["seconds"], totals["real"], totals["padded"], totals["flops"],
                           peak),
                 "busy_share": None, "peak_memory_mib": max(r["peak_memory_mib"] or 0 for r in rows) or None})
    saved()


def report(data: dict) -> None:
    """The table, the targets and the L4 estimate from a run's figures (its JSON)."""
    peak = data["peak"]
    print()
    print(f"{data['n']} posts ({data['with_text']} with text), scale {data['scale']}, device {data['device']}; "
          "basis 'forward': over the summed forward-pass time, 'wall': over the whole run; %peak against the "
          f"measured {peak['dtype']} peak {peak['flops'] / 1e12:.1f} TFLOP/s; busy: sampled GPU utilization; "
          "GPU MiB: peak allocated by the passes (bare) or the GPU's peak used memory, sampled (wall rows)")
    print_table(data["rows"])
    print("\ntargets:")
    for line in target_lines(data["rows"]):
        print(line)
    estimate = data.get("l4_estimate")
    if estimate:
        print(f"\nL4 estimate (deploy/README.md): {estimate['posts_per_s']:.0f} posts/s per g2-standard-8 worker, "
              f"{estimate['bound_by']}-bound (GPU-bound {estimate['gpu_bound']:.0f}, host-bound "
              f"{estimate['host_bound']:.0f}; from ours w=1 on {estimate['measured_on']})")


# ---------------------------------------------------------------- the run

def parse_args(argv):
    from benchmarks.throughput import DEFAULT_CORPUS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="posts (default 20,000)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="JSONL(.gz) with id and text")
    parser.add_argument("--scale", choices=("real", "small", "tiny"), default="real")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto (default): cuda when torch sees one, as the pipeline and training decide")
    parser.add_argument("--contenders", default="ours,hf-loop", help="besides the bare loop, which always runs")
    parser.add_argument("--workers", default="1,4", help="worker counts for ours (1: in memory)")
    parser.add_argument("--ours-args", default="", help="more options for ours, e.g. '--max-tokens-per-batch 131072'")
    parser.add_argument("--max-tokens-per-batch", type=int, default=65_536, help="the bare loop's token budget")
    parser.add_argument("--max-items-per-batch", type=int, default=1024, help="the bare loop's item cap")
    parser.add_argument("--peak-sizes", default="8192,16384", help="square matmul sizes for the peak")
    parser.add_argument("--cache", default=None, help="checkpoint cache (default ~/.cache/label_corpus_bench)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--report", metavar="JSON", help="print the table and targets of an earlier run's --json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        run_ours_child(args.child)
        return 0
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return 0
    import torch
    import transformers

    from benchmarks.throughput import (device_name, prepare_checkpoints, prepare_posts,
                                       quiet_offline_transformers, run_child)
    from models.checkpoints import load_config_dict
    from models.runtime import pick_device

    quiet_offline_transformers()
    device = pick_device(args.device)  # the pipeline's rule (models.runtime)
    workdir, posts, corpus_note, input_path, present = prepare_posts(args, "gpu-bench-")
    checkpoints, models_file = prepare_checkpoints(args, posts, workdir)
    configs = {name: load_config_dict(path) for name, path in checkpoints.items()}

    peak_dtype = "bf16" if device == "cuda" else "fp32"
    sizes = [int(s) for s in args.peak_sizes.split(",")] if device == "cuda" else [1024]
    peak = matmul_peak(device, peak_dtype, sizes=sizes, repeats=20 if device == "cuda" else 5)
    print(f"device: {device_name(device)}; measured {peak_dtype} matmul peak {peak['flops'] / 1e12:.1f} TFLOP/s "
          f"({', '.join(f'{n}: {v / 1e12:.1f}' for n, v in peak['per_size'].items())})", flush=True)
    print(f"corpus: {corpus_note}; {len(present)} non-empty after cleaning", flush=True)

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    name_of_device = device_name(device)
    extras: dict = {}

    rows: list[dict] = []
    profile: dict[str, dict] = {}

    def save():  # after every contender (and each bare classifier): a run cut short keeps its figures
        if args.json:
            Path(args.json).write_text(json.dumps({
                "n": len(posts), "with_text": len(present), "corpus": corpus_note, "scale": args.scale,
                "device": device, "device_name": name_of_device, "peak": peak, "profile": profile, "rows": rows,
                "targets": TARGETS, **extras, "torch": torch.__version__, "transformers": transformers.__version__,
            }, indent=2, default=str))

    # The bare loop always runs: it is the limit the others are held against, and its tokenization
    # gives the token lengths and useful FLOPs of every row.
    run_bare(checkpoints, configs, present, device, peak["flops"], args.max_tokens_per_batch,
             args.max_items_per_batch, rows, profile, save)
    all_real = sum(p["real_tokens"] for p in profile.values())
    all_flops = sum(p["useful_flops"] for p in profile.values())

    def run_ours(workers: int) -> None:
        label = f"ours w={workers}"
        with GpuSampler() as sampler:
            result = ours(str(input_path), str(models_file), str(workdir / f"out-ours-{workers}"), device,
                          workers, workdir, args.ours_args.split())
        if "error" in result:
            rows.append({"contender": label, "classifier": "all four", "error": result["error"]})
            print(f"{label} failed:\n{result.get('stderr_tail', result['error'])}", flush=True)
            save()
            return
        sampled = sampler.summary()
        per = result["per_classifier"]
        for name in checkpoints:
            counters = per.get(name, {})
            seconds = counters.get("inference_us", 0) / 1e6
            if seconds:
                rows.append({"contender": label, "classifier": name, "basis": "forward",
                             **figures(len(present), seconds, counters.get("real_tokens", 0),
                                       counters.get("padded_tokens"), profile[name]["useful_flops"], peak["flops"]),
                             "oom_splits": counters.get("oom_splits", 0)})
        padded = sum(c.get("padded_tokens", 0) for c in per.values())
        rows.append({"contender": label, "classifier": "all four", "basis": "wall",
                     **figures(len(present), result["wall_s"], all_real, padded, all_flops, peak["flops"]),
                     **sampled})
        print(f"{label}: {result['wall_s']:.1f}s", flush=True)
        if workers == 1 and device == "cuda":
            forward = sum(c.get("inference_us", 0) for c in per.values()) / 1e6
            extras["l4_estimate"] = l4_estimate(len(present), result["wall_s"], forward, name_of_device)
        save()

    def run_hf_loop() -> None:
        spec = {"name": "hf-loop", "input": str(input_path), "models_file": str(models_file), "device": device,
                "n": args.n, "output": str(workdir / "out-hf-loop"), "cpu_threads": None}
        with GpuSampler() as sampler:
            result = run_child(spec, workdir)
        if "error" in result:
            rows.append({"contender": "hf-loop", "classifier": "all four", "error": result["error"]})
            print(f"hf-loop failed:\n{result.get('stderr_tail', result['error'])}", flush=True)
        else:
            rows.append({"contender": "hf-loop", "classifier": "all four", "basis": "wall",
                         **figures(len(present), result["wall_s"], all_real,
                                   sum(p["hf_loop_padded_tokens"] for p in profile.values()), all_flops, peak["flops"]),
                         **sampler.summary()})
            print(f"hf-loop: {result['wall_s']:.1f}s", flush=True)
        save()

    # The first worker count, then hf-loop, then the other worker counts: a run cut short by the
    # device's time limit still has the three figures the targets need.
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()] if "ours" in contenders else []
    for workers in worker_counts[:1]:
        run_ours(workers)
    if "hf-loop" in contenders:
        run_hf_loop()
    for workers in worker_counts[1:]:
        run_ours(workers)

    save()
    report(json.loads(Path(args.json).read_text()) if args.json else {
        "n": len(posts), "with_text": len(present), "scale": args.scale, "device": device, "peak": peak,
        "rows": rows, **extras})
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU benchmark's pieces, checked on CPU: useful FLOPs from a config against torch's own
FlopCounterMode, the sampler's parsing and its nvidia-smi path (a stand-in nvidia-smi on PATH), the
bare loop's batching and its logits against a plain one-text-at-a-time forward pass."""
from __future__ import annotations

import dataclasses
import os
import stat
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.gpu import (GpuSampler, bare_loop, corpus_order_padded, datasheet_bf16, flops_from_config,
                            l4_estimate, length_sorted_batches, parse_smi_line, target_lines)
from models.checkpoints import load_config_dict
from tests.test_pipeline import mixed_length_texts, reference_probabilities
from transforms.cleaning import clean_text


@pytest.mark.parametrize("name", ["politics", "stars", "sentiment", "emotion"])
def test_useful_flops_from_the_config_equal_torch_flop_counter(tiny_checkpoints, name):
    """FlopCounterMode counts every matmul torch runs (eager attention, so QK^T and AV are plain
    matmuls); one text at a time there is no padding, so it must equal our count exactly."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tiny_checkpoints[name]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
    texts = ["a", "the vote and the economy today", "酒店 很好 " * 30, "x " * 400]
    lengths = []
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
            lengths.append(encoded["input_ids"].shape[1])
            model(**encoded)
    assert len(set(lengths)) == len(texts)  # the n^2 attention term is exercised at several lengths
    assert flops_from_config(load_config_dict(path), lengths) == counter.get_total_flops()


@pytest.mark.parametrize("line, expected", [
    ("37, 1024\n", (37.0, 1024.0)), ("0, 0", (0.0, 0.0)), (" 100 ,  80511 ", (100.0, 80511.0)),
    ("[N/A], 1024", None), ("", None), ("utilization.gpu, memory.used", None), ("101, 5", None),
    ("5", None), ("5, 6, 7", None), ("-1, 5", None),
])
def test_nvidia_smi_lines_are_parsed_or_refused(line, expected):
    assert parse_smi_line(line) == expected


def test_sampler_reads_nvidia_smi_until_stopped(tmp_path, monkeypatch):
    """Without pynvml, the sampler runs `nvidia-smi ... -lms` and reads its lines as they come."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: the nvidia-smi path
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n"
                    "case \"$*\" in *utilization.gpu,memory.used*csv,noheader,nounits*--loop-ms=50*--id=0*) ;; "
                    "*) echo bad args >&2; exit 2;; esac\n"
                    "echo '[N/A], 10'\nfor u in 20 40 90; do echo \"$u, $((u * 10))\"; done\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with GpuSampler(interval_ms=50) as sampler:
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
    summary = sampler.summary()
    assert summary["source"] == "nvidia-smi" and summary["samples"] == 3
    assert summary["busy_share"] == pytest.approx(0.5) and summary["peak_memory_mib"] == 900
    assert sampler._proc.poll() is not None  # stopped with the block, not left running
    assert time.monotonic() - started < 5  # and promptly


def test_sampler_without_any_source_gives_no_figures(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", "")
    with GpuSampler() as sampler:
        pass
    assert sampler.summary() == {"source": None, "samples": 0, "busy_share": None, "peak_memory_mib": None}


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 512), max_size=300), max_tokens=st.integers(1, 5000),
       max_items=st.integers(1, 64))
def test_length_sorted_batches_cover_every_text_once_within_the_budget(lengths, max_tokens, max_items):
    batches = length_sorted_batches(lengths, max_tokens, max_items)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= max_items
        assert len(batch) == 1 or len(batch) * width <= max_tokens
        assert min(lengths[i] for i in batch) >= 0.8 * width  # padding under 20% of the batch's tokens


@pytest.mark.parametrize("name", ["stars", "emotion"])
def test_bare_loop_logits_match_a_plain_forward_pass(tiny_checkpoints, name):
    texts = [t for t in (clean_text(t) for t in mixed_length_texts(60, seed=11)) if t]
    result = bare_loop(tiny_checkpoints[name], texts, "cpu", max_tokens=900, max_items=9)
    assert result["passes"] > 5 and result["seconds"] > 0
    assert result["real_tokens"] == sum(result["lengths"]) <= result["padded_tokens"]
    np.testing.assert_allclose(result["logits"], reference_probabilities(tiny_checkpoints[name], texts),
                               atol=1e-4, rtol=0)


def test_targets_are_judged_on_the_best_rows():
    rows = [{"contender": "bare", "classifier": "all four", "posts_per_s": 1000.0, "share_of_peak": 0.45},
            {"contender": "ours w=1", "classifier": "all four", "posts_per_s": 700.0},
            {"contender": "ours w=4", "classifier": "all four", "posts_per_s": 850.0},
            {"contender": "ours w=4", "classifier": "emotion", "posts_per_s": 9000.0},
            {"contender": "hf-loop", "classifier": "all four", "posts_per_s": 200.0}]
    lines = target_lines(rows)
    assert "45.0%" in lines[0] and lines[0].endswith("MET")
    assert "ours w=4" in lines[1] and "0.85" in lines[1] and lines[1].endswith("MET")
    assert "4.25" in lines[2] and lines[2].endswith("MISSED")


def test_l4_estimate_is_the_slower_of_the_gpu_and_the_host_limits():
    # 50,000 posts; 100 s end to end of which 10 s forward passes, on an H100 SXM (989 TFLOP/s bf16).
    gpu_bound = l4_estimate(50_000, 100.0, 10.0, "NVIDIA H100 80GB HBM3")
    # On the L4 (121 TFLOP/s) the passes take 10 x 989 / 121 = 81.7 s; host work 90 s over 8 vCPUs.
    assert gpu_bound["gpu_bound"] == pytest.approx(50_000 / (10 * 989 / 121))
    assert gpu_bound["host_bound"] == pytest.approx(8 * 50_000 / 90)
    assert gpu_bound["bound_by"] == "gpu" and gpu_bound["posts_per_s"] == gpu_bound["gpu_bound"]
    host_bound = l4_estimate(50_000, 1000.0, 10.0, "NVIDIA H200")
    assert host_bound["bound_by"] == "host" and host_bound["posts_per_s"] == host_bound["host_bound"]
    assert l4_estimate(50_000, 100.0, 10.0, "Some other GPU") is None
    assert l4_estimate(50_000, 10.0, 10.0, "NVIDIA H200") is None  # no host time left: not a w=1 run
    assert datasheet_bf16("NVIDIA H100 PCIe") == 756e12 and datasheet_bf16("NVIDIA L4") == 121e12


@given(lengths=st.lists(st.integers(1, 512), min_size=1, max_size=200), batch=st.integers(1, 64))
@settings(max_examples=50, deadline=None)
def test_corpus_order_padding_pads_each_batch_to_its_longest(lengths, batch):
    padded = corpus_order_padded(lengths, batch)
    assert sum(lengths) <= padded <= len(lengths) * max(lengths)
    assert corpus_order_padded(lengths, 1) == sum(lengths)
    assert corpus_order_padded(lengths, len(lengths)) == len(lengths) * max(lengths)


def test_real_shapes_read_back_from_transformers_configs_cost_about_1_gflop_a_token():
    """The benchmark's real shapes written as transformers configs read back as the same shapes,
    and cost what the issue says the four classifiers cost: about 1 GFLOP per token."""
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    from benchmarks.checkpoints import SHAPES
    from benchmarks.gpu import shape_from_config

    total = 0.0
    for name, shape in SHAPES["real"].items():
        if shape.arch == "distilbert":
            config = DistilBertConfig(vocab_size=shape.vocab, dim=shape.hidden, n_layers=shape.layers,
                                      n_heads=shape.heads, hidden_dim=shape.ffn)
        else:
            config = (RobertaConfig if shape.arch == "roberta" else BertConfig)(
                vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                num_attention_heads=shape.heads, intermediate_size=shape.ffn)
        as_dict = {**config.to_dict(), "id2label": {i: str(i) for i in range(5)}}
        assert dataclasses.replace(shape_from_config(as_dict), lowercase=shape.lowercase) == shape  # (tokenizer's)
        total += flops_from_config(as_dict, [30] * 1000) / 30_000
    assert 1.0e9 <= total <= 1.1e9


def test_the_benchmark_runs_end_to_end_and_reports_what_it_saved(tmp_path, capsys):
    """benchmarks.gpu's own command line on CPU (toy shapes, generated posts, the bare loop only):
    every classifier gets a row, the rows agree with the token profile, and --report prints the
    saved run's table and targets."""
    import json

    from benchmarks.gpu import main

    out = tmp_path / "gpu.json"
    assert main(["--scale", "tiny", "--n", "60", "--corpus", str(tmp_path / "absent.jsonl"), "--contenders", "",
                 "--cache", str(tmp_path / "cache"), "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {row["classifier"]: row for row in data["rows"]}
    assert set(rows) == {"politics", "stars", "sentiment", "emotion", "all four"}
    for name, profile in data["profile"].items():
        assert rows[name]["tokens_per_s"] * rows[name]["seconds"] == pytest.approx(profile["real_tokens"])
        assert 0 < rows[name]["padding_efficiency"] <= 1 and rows[name]["share_of_peak"] > 0
    assert rows["all four"]["seconds"] == pytest.approx(sum(rows[n]["seconds"] for n in data["profile"]))
    capsys.readouterr()
    assert main(["--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bare loop: useful FLOPs / measured peak" in printed and "all four" in printed

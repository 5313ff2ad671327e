"""One device rule (issue 20): `--device auto` means CUDA when torch sees a CUDA device, else the
CPU, decided by models.runtime.pick_device for labeling, training and the benchmarks alike. Checked
without a GPU: torch.cuda.is_available is made to say yes or no, and each side's choice is read."""
from __future__ import annotations

import pytest
import torch

import models.runtime
from benchmarks import gpu, throughput
from models import batch_labeling as handler
from models.batch_labeling import wants_shared_model
from models.training import TrainingSetupError
from pipelines import train


class Stop(Exception):
    """Raised where a benchmark's main would start its work: its device is chosen by then."""


@pytest.fixture()
def decisions(monkeypatch):
    """The (requested, chosen) pairs models.runtime.pick_device was asked for."""
    seen, rule = [], models.runtime.pick_device

    def spy(requested):
        chosen = rule(requested)
        seen.append((requested, chosen))
        return chosen

    # training and the handler import the rule itself (the benchmarks import it when they run)
    for module in (models.runtime, train, handler):
        assert module.pick_device is rule
        monkeypatch.setattr(module, "pick_device", spy)
    return seen


def cuda_seen(monkeypatch, available: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    if available:  # what TrainingArguments does with a CUDA device it is told of, on a build without CUDA
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def benchmark_device(monkeypatch, bench, argv=()) -> None:
    def stop(*_args, **_kwargs):
        raise Stop

    monkeypatch.setattr(throughput, "quiet_offline_transformers", lambda: None)
    monkeypatch.setattr(throughput, "prepare_posts", stop)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    with pytest.raises(Stop):
        bench.main(list(argv))


@pytest.mark.parametrize("available", [True, False])
def test_auto_is_decided_by_the_one_rule_everywhere(monkeypatch, decisions, available):
    cuda_seen(monkeypatch, available)
    expected = "cuda" if available else "cpu"
    assert models.runtime.pick_device("auto") == expected
    decisions.clear()

    # training: the Trainer is told to stay on the CPU exactly when the rule says cpu
    _, args = train.parse_args(["--task", "sentiment", "--train", "x.jsonl", "--output", "o", "--report_to", "none"])
    assert args.use_cpu is (expected == "cpu")
    assert decisions == [("auto", expected)]

    for bench in (throughput, gpu):  # the benchmarks, with no --device
        decisions.clear()
        benchmark_device(monkeypatch, bench)
        assert decisions == [("auto", expected)], bench.__name__

    decisions.clear()
    assert wants_shared_model("auto") is (expected == "cuda")  # labeling: where the pipeline is built
    assert decisions == [("auto", expected)]


def test_cuda_asked_for_without_one_is_refused_by_training_and_benchmarks(monkeypatch):
    cuda_seen(monkeypatch, False)
    with pytest.raises(TrainingSetupError, match="--device cuda"):
        train.parse_args(["--task", "sentiment", "--train", "x.jsonl", "--output", "o", "--device", "cuda"])
    with pytest.raises(RuntimeError, match="--device cuda"):
        benchmark_device(monkeypatch, throughput, ["--device", "cuda"])


def test_use_cpu_counts_as_device_cpu_and_contradicts_device_cuda(monkeypatch, decisions):
    cuda_seen(monkeypatch, True)
    base = ["--task", "sentiment", "--train", "x.jsonl", "--output", "o", "--report_to", "none"]
    _, args = train.parse_args(base + ["--use_cpu", "true"])
    assert args.use_cpu is True and decisions == [("cpu", "cpu")]
    with pytest.raises(TrainingSetupError, match="contradict"):
        train.parse_args(base + ["--use_cpu", "true", "--device", "cuda"])

"""OpenVINO as the CPU backend: a checkpoint's model converted to OpenVINO IR, cached beside the
checkpoint, compiled for the CPU at a precision, and run on the padded sub-batches the handler's
planner cuts (batch size and sequence length vary per pass: the IR's inputs are dynamic).

Only the forward pass changes: tokenizer, planner, heads, failure halving and counts are those
of models/classifier.py (LoadedClassifier holds an OpenVINOModel as its model, and run_forward
hands it the sub-batch's numpy arrays).

Precisions: fp32 and bf16 run the same fp32 IR (bf16 is the CPU plugin's inference precision
hint, so one conversion serves both); int8 is an IR that NNCF quantized with calibration posts,
built offline by `python -m models.export` (minutes for a large model: never inside a worker).

The cache: CHECKPOINT/.openvino/<kind>-<key>/model.xml (+ .bin), key = a hash of the checkpoint's
revision, openvino's version and the IR kind, so a retrained checkpoint or a new openvino never
uses a stale IR. A conversion writes into a temp dir of its own beside the entry and renames it
into place, under a lock file, so the worker processes of a machine convert once, never into the
same place. Where the cache cannot be written (a read-only image), the model is converted in
memory with a warning, every time a worker loads it.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

LOG = logging.getLogger(__name__)
CACHE_DIR = ".openvino"  # inside the checkpoint directory: checkpoint revisions hash its files only
IR_FILE = "model.xml"
EXPORT_COMMAND = "python -m models.export {checkpoints} --calibration POSTS.jsonl"
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what NNCF left unquantized runs in fp32


class MissingInt8Model(RuntimeError):
    """An int8 run for a checkpoint whose int8 IR was not built (models.export)."""


def ir_kind(precision: str) -> str:
    return "int8" if precision == "int8" else "fp32"


def openvino_version() -> str:
    import openvino

    return openvino.__version__


def cache_entry(local_dir: str, revision: str, precision: str) -> Path:
    """Where the IR of this checkpoint revision for this precision lives (maybe not yet)."""
    kind = ir_kind(precision)
    key = hashlib.sha256(f"{revision}\0{openvino_version()}\0{kind}".encode()).hexdigest()[:16]
    return Path(local_dir) / CACHE_DIR / f"{kind}-{key}"


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX), as OpenVINO's CPU plugin reports it."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINOModel:
    """A compiled IR with the one thing LoadedClassifier asks of a model (config.num_labels);
    called with the padded sub-batch's int64 arrays, it returns float32 logits."""

    def __init__(self, compiled, num_labels: int, precision: str, source: str):
        self.compiled, self.precision, self.source = compiled, precision, source
        self.config = SimpleNamespace(num_labels=num_labels)
        self.input_names = {name for port in compiled.inputs for name in port.get_names()}
        self.request = compiled.create_infer_request()

    def __call__(self, arrays: dict) -> np.ndarray:
        self.request.infer({name: array for name, array in arrays.items() if name in self.input_names})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the buffer is reused


def logits_module(model, token_types: bool):
    """A torch module returning the model's logits alone, the inputs as named arguments (what
    convert_model traces: a transformers output object is not a tensor)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_types else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return Logits().eval()


def convert(torch_model):
    """The torch model as an OpenVINO model with dynamic batch and sequence dimensions, taking
    token_type_ids where the torch model does."""
    import inspect

    import openvino
    import torch

    token_types = "token_type_ids" in inspect.signature(torch_model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    # token type 0 always exists (RoBERTa has one type); id 1 is in every vocabulary
    example = {name: (torch.zeros if name == "token_type_ids" else torch.ones)(2, 8, dtype=torch.long) for name in names}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings about Python control flow on shapes
        return openvino.convert_model(logits_module(torch_model, token_types), example_input=example,
                                      input=[(name, openvino.PartialShape([-1, -1]), openvino.Type.i64)
                                             for name in names])


def cached_ir(entry: Path, build: Callable[[], object], in_memory_fallback: bool = True) -> tuple[object, bool]:
    """(the IR path, or the model itself where the cache cannot be written; whether this call
    converted). The IR is written once per machine: under a lock, into a temp dir renamed into place.
    Without in_memory_fallback an unwritable cache raises OSError (models.export: the IR is the point)."""
    import openvino

    if (entry / IR_FILE).is_file():
        return entry / IR_FILE, False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = open(entry.parent / f"{entry.name}.lock", "a+")
    except OSError as exc:
        if not in_memory_fallback:
            raise
        return _unwritable(entry, exc, build)
    with lock:  # closing it releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / IR_FILE).is_file():  # another process converted it while this one waited
            return entry / IR_FILE, False
        model = build()
        try:
            temp = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp-", dir=entry.parent))
        except OSError as exc:
            if not in_memory_fallback:
                raise
            return _unwritable(entry, exc, lambda: model)
        try:
            temp.chmod(0o755)  # mkdtemp's 0700 would keep other users of the checkpoint out
            openvino.save_model(model, temp / IR_FILE, compress_to_fp16=False)
            os.rename(temp, entry)
        finally:
            shutil.rmtree(temp, ignore_errors=True)  # gone after the rename; what a failure left otherwise
        _drop_stale(entry)
        return entry / IR_FILE, True


def _unwritable(entry: Path, exc: OSError, build: Callable[[], object]) -> tuple[object, bool]:
    LOG.warning("the OpenVINO cache %s cannot be written (%s: %s): converting in memory, again in every worker "
                "process; make the checkpoint directory writable to convert once per machine", entry.parent,
                type(exc).__name__, exc)
    return build(), True


def _drop_stale(entry: Path) -> None:
    """Entries of the same kind for other revisions or openvino versions can never be used again."""
    kind = entry.name.split("-", 1)[0]
    for other in entry.parent.iterdir():
        if other.is_dir() and other != entry and other.name.startswith(f"{kind}-") and ".tmp-" not in other.name:
            shutil.rmtree(other, ignore_errors=True)


def compile_ir(ir, precision: str, threads: int):
    """The IR (a path or a model) compiled for this CPU at `precision` with `threads` threads.
    bf16 on a CPU without native bf16 runs fp32 (with a warning): emulated bf16 is slower and less exact."""
    import openvino

    hint = HINTS[precision]
    if precision == "bf16" and not cpu_has_bf16():
        LOG.warning("this CPU has no native bf16: OpenVINO runs fp32 instead")
        hint = "f32"
    core = openvino.Core()
    return core.compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                                          "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})


def load(local_dir: str, revision: str, precision: str, threads: int, num_labels: int,
         torch_model: Callable[[], object]) -> OpenVINOModel:
    """The checkpoint as an OpenVINOModel: the cached IR, converted first where missing (fp32 and
    bf16; torch_model() gives the torch model to convert). int8 never converts here."""
    entry = cache_entry(local_dir, revision, precision)
    if precision == "int8":
        if not (entry / IR_FILE).is_file():
            raise MissingInt8Model(int8_missing_message([local_dir]))
        ir, converted = entry / IR_FILE, False
    else:
        ir, converted = cached_ir(entry, lambda: convert(torch_model()))
    LOG.info("OpenVINO %s model of %s %s", precision, local_dir, "converted" if converted else f"from {entry}")
    return OpenVINOModel(compile_ir(ir, precision, threads), num_labels, precision, str(ir))


def int8_missing_message(checkpoints: list[str]) -> str:
    """One line: which checkpoints lack an int8 IR, and the command that builds them."""
    version = openvino_version().split("-")[0]
    command = EXPORT_COMMAND.format(checkpoints=" ".join(f"--checkpoint {c}" for c in checkpoints))
    return (f"--cpu-precision int8 needs an OpenVINO int8 model of {', '.join(checkpoints)} (for this revision and "
            f"openvino {version}), built once with calibration posts: `{command}`; or run --cpu-precision bf16 or fp32")


def has_int8(local_dir: str, revision: str) -> bool:
    return (cache_entry(local_dir, revision, "int8") / IR_FILE).is_file()

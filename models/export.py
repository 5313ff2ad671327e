"""Build the OpenVINO int8 model of checkpoints, offline, from a sample of posts (calibration).

    python -m models.export --checkpoint DIR [--checkpoint DIR ...] --calibration POSTS.jsonl[.gz]

NNCF's post-training quantization (nncf.quantize, model type transformer) of each checkpoint's
fp32 IR, with activation ranges measured on --samples cleaned posts (a seeded random sample of
the file: JSON Lines, CSV or Parquet, as the job reads them). The int8 IR goes into the
checkpoint's OpenVINO cache (models/openvino_backend.py), keyed by its revision and openvino's
version, where `label_corpus --cpu-precision int8` finds it; a job asking for int8 without it
stops at launch naming this command. Converting and calibrating takes about a minute for a
base-size model and a few for a large one on a few cores: once per checkpoint, never in a worker.
Needs the `int8` extra (nncf).
"""
from __future__ import annotations

import argparse
import io
import random
import sys
import time

from models import openvino_backend
from models.checkpoints import CheckpointError, load_config_dict, load_tokenizer, load_weights, resolve
from models.runtime import token_limit

DEFAULT_SAMPLES = 300


def calibration_texts(path: str, samples: int, text_field: str = "text", seed: int = 0) -> list[str]:
    """A seeded random sample of up to `samples` non-empty cleaned texts of the file (reservoir
    sampling: the whole file is read once, nothing but the sample is kept)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from transforms.cleaning import clean_text
    from transforms.inputs import decompressed
    from transforms.records import DeadLetter, iter_file_records

    rng, chosen, seen = random.Random(seed), [], 0
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    with decompressed(io.BufferedReader(raw), path) as handle:
        for item in iter_file_records(path, handle):
            if isinstance(item, DeadLetter) or not isinstance(item[1], dict):
                continue
            text = item[1].get(text_field)
            if not isinstance(text, str) or not text.strip():
                continue
            seen += 1
            if len(chosen) < samples:
                chosen.append(text)
            elif (slot := rng.randrange(seen)) < samples:
                chosen[slot] = text
    cleaned = [t for t in (clean_text(text) for text in chosen) if t]
    if not cleaned:
        raise ValueError(f"{path} has no posts with a non-empty {text_field!r} to calibrate with")
    return cleaned


def calibration_item(encoded, inputs: set[str]) -> dict:
    """One text's model inputs, every input of the IR given (token types as zeros where the
    tokenizer has none, as the job's padding gives them): an input left out would keep the
    previous item's tensor, of another length."""
    import numpy as np

    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    given = {"input_ids": ids, "attention_mask": np.asarray(encoded.get("attention_mask", np.ones_like(ids)),
                                                            dtype=np.int64),
             "token_type_ids": np.asarray(encoded.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64)}
    return {name: array for name, array in given.items() if name in inputs}


def export_int8(local_dir: str, revision: str, texts: list[str]) -> tuple[str, bool]:
    """(the int8 IR's path, whether it was built now) for a resolved checkpoint."""
    import nncf
    import openvino

    entry = openvino_backend.cache_entry(local_dir, revision, "int8")

    def quantize():
        fp32, _ = openvino_backend.cached_ir(openvino_backend.cache_entry(local_dir, revision, "fp32"),
                                             lambda: openvino_backend.convert(load_weights(local_dir)))
        model = openvino.Core().read_model(fp32) if not isinstance(fp32, openvino.Model) else fp32
        inputs = {name for port in model.inputs for name in port.get_names()}
        tokenizer = load_tokenizer(local_dir)
        limit = token_limit(tokenizer, load_config_dict(local_dir))
        items = [calibration_item(tokenizer(text, truncation=True, max_length=limit, return_tensors="np"), inputs)
                 for text in texts]
        return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(items))

    path, built = openvino_backend.cached_ir(entry, quantize, in_memory_fallback=False)
    return str(path), built


def main(argv=None) -> int:
    from pipelines import console

    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="a checkpoint (local dir, gs:// or s3:// prefix, hub id); repeatable")
    parser.add_argument("--calibration", required=True, help="posts to calibrate with (JSON Lines, CSV, Parquet)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"posts sampled for calibration (default {DEFAULT_SAMPLES})")
    parser.add_argument("--text-field", default="text", help="the posts' text field (default text)")
    args = parser.parse_args(argv)
    console.setup()
    try:
        import nncf  # noqa: F401
    except ImportError:
        print("models.export: int8 needs nncf: pip install -c constraints.txt -e '.[int8]'", file=sys.stderr)
        return 2
    if args.samples < 1:
        parser.error(f"--samples {args.samples}: give a number >= 1")
    try:
        texts = calibration_texts(args.calibration, args.samples, args.text_field)
        for ref in args.checkpoint:
            checkpoint = resolve("export", ref)
            started = time.time()
            path, built = export_int8(checkpoint.local_dir, checkpoint.revision, texts)
            print(f"{ref}: int8 model {'built' if built else 'already there'} at {path} "
                  f"({len(texts)} calibration posts, {time.time() - started:.0f} s)")
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"models.export: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The names the labeling job shares with its readers, each spelled once: the base columns of the
output, the shard file names, and the keys of the in-pipeline counts and the Beam metrics.

The pipeline (pipelines/labeling.py, pipelines/beam_steps.py, models/batch_labeling.py), the commit
(transforms/partition.py: the manifest is made from these counts), the report
(pipelines/report.py, pipelines/label_shares.py) and the benchmarks import them from here, so a
name changed here changes for all of them (the output schema and manifest are contracts:
docs/output-schema.md, docs/architecture.md). Tests keep the literal names: they assert the contract.
"""
from __future__ import annotations

import pyarrow as pa

# ------------------------------------------------------------------------------- base columns

ID, TEXT, LANG, CLEAN_TEXT = "id", "text", "lang", "clean_text"
# The output's leading columns; the kept input fields follow them, then CLEAN_TEXT_FIELD, then
# each classifier's columns (pipelines.labeling.output_schema).
BASE_FIELDS = (pa.field(ID, pa.string()), pa.field(TEXT, pa.string()), pa.field(LANG, pa.string()))
CLEAN_TEXT_FIELD = pa.field(CLEAN_TEXT, pa.string())
BASE_COLUMNS = (ID, TEXT, LANG, CLEAN_TEXT)  # every output has them, whatever its classifiers

# The files' key-value metadata: every classifier of the run as JSON {name: {checkpoint, revision}}
# (the report finds the generic classifiers of a partition by it), and each one's under its name.
CHECKPOINTS_METADATA_KEY = "label_corpus.checkpoints"
# What ran the models (the manifest's `inference`): openvino or torch, and fp32, bf16, int8 (CPU) or autocast (CUDA).
BACKEND_METADATA_KEY = "label_corpus.backend"
PRECISION_METADATA_KEY = "label_corpus.precision"


def checkpoint_metadata_keys(name: str) -> tuple[str, str]:
    return f"label_corpus.{name}.checkpoint", f"label_corpus.{name}.revision"


# ------------------------------------------------------------------------------- shard files

SHARD_PREFIX = "labels"
SHARD_SUFFIX = ".parquet"
# Beam's shard template (its default, said here so the names below hold): labels-00000-of-00004.parquet
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"


def shard_glob(suffix: str = SHARD_SUFFIX) -> str:
    """The glob of a partition's shards (`labels-*.parquet`), or of staged ones with their suffix."""
    return f"{SHARD_PREFIX}-*{suffix}"


SHARD_GLOB = shard_glob()


def shard_name(index: int, count: int) -> str:
    """The name of shard `index` of `count`, as Beam's sink makes it with SHARD_TEMPLATE."""
    return f"{SHARD_PREFIX}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


# ------------------------------------------------------------------------------- counts and metrics

# The job's own Beam counters (records read, rows written, ...) go in this namespace, each
# classifier's (real_tokens, padded_tokens, sub_batches, ...) in classifier_namespace(name).
METRICS_NAMESPACE = "label_corpus"
CLASSIFIERS_NAMESPACE = "classifiers"  # RunInference's own metrics for the handler of all the classifiers
CLASSIFIER_NAMESPACE_PREFIX = "classifier_"

# Keys of the in-pipeline counts ((key, number) pairs the commit step sums; the manifest's fields
# records_read and empty_text_rows have the same names) and of the counters of the same name.
RECORDS_READ = "records_read"
EMPTY_TEXT_ROWS = "empty_text_rows"
# Beam counters only (the manifest counts these from the files themselves)
DEAD_LETTERED = "dead_lettered"
FILES_READ = "files_read"
FILES_BROKEN_OFF = "files_broken_off"
ROWS_WRITTEN = "rows_written"
LANGUAGE_COUNT_PREFIX = "lang:"  # posts per `lang` value: lang:en, lang:und, ...


def classifier_namespace(name: str) -> str:
    """The metrics namespace of one classifier's counters."""
    return f"{CLASSIFIER_NAMESPACE_PREFIX}{name}"


def namespace_classifier(namespace: str) -> str | None:
    """The classifier whose counters a namespace holds (classifier_namespace's inverse), or None."""
    if namespace.startswith(CLASSIFIER_NAMESPACE_PREFIX):
        return namespace[len(CLASSIFIER_NAMESPACE_PREFIX):]
    return None


def inferences_key(name: str) -> str:
    """Texts the classifier's model ran on (failed ones included)."""
    return f"inferences_{name}"


def tokens_key(name: str) -> str:
    """Real (unpadded) tokens the classifier's model ran on."""
    return f"tokens_{name}"


def labeled_key(name: str) -> str:
    """Rows written with the classifier's labels."""
    return f"labeled_{name}"


def skipped_language_key(name: str) -> str:
    """Rows with a text that routing kept from the classifier (outside its languages or script)."""
    return f"skipped_language_{name}"


def carried_key(name: str) -> str:
    """Rows whose committed columns of the classifier were carried over (--skip-if-done)."""
    return f"carried_{name}"


def language_key(lang: str) -> str:
    return f"{LANGUAGE_COUNT_PREFIX}{lang}"


def key_language(key: str) -> str | None:
    """The language a posts-per-language key counts (language_key's inverse), or None."""
    return key[len(LANGUAGE_COUNT_PREFIX):] if key.startswith(LANGUAGE_COUNT_PREFIX) else None

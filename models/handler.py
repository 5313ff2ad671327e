"""Our RunInference ModelHandler: one for all the classifiers of a run.

Its model is the set of loaded classifiers (models.classifier.LoadedClassifier). Each element is
a row (a dict with `text`, `clean_text` and the input's `lang`, if any); for each batch
RunInference hands us, the rows get their languages (transforms.beam_io.add_languages: detected
for the batch at once), then every classifier gets the cleaned texts of the rows in its
languages and script (transforms.language.runs_on), runs them in length-sorted sub-batches, and
its columns go into the rows. So each post crosses Beam's inference machinery once, whatever the
number of classifiers, and a classifier's empty or out-of-language rows cost nothing (their
columns stay absent: null in the output).
Under --skip-if-done a row may carry the committed columns of its cleaned text
(transforms.reuse): the classifiers named in `carried` take those instead of running, and
count them as carried.

run_inference returns one LabeledBatch per batch: the rows with their columns, the FailedRows
where a classifier could not run a text (their records go to the dead letters), and the rows and
tokens each classifier ran, and the rows it labeled and skipped, for the in-pipeline counts of
the manifest (what the models actually ran on: nothing is tokenized twice). One element per
batch, not per row: what follows inference (dead letters, counts, the Arrow table written to
Parquet) works on whole batches.

On CUDA the classifiers are shared by the worker processes of a machine (`large_model`, and
`model_copies` copies): Beam then hands run_inference a proxy, and only texts and columns cross
the process boundary (LoadedClassifiers.classify_all runs where the models live).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from models.checkpoints import ResolvedCheckpoint
from models.classifier import InferenceFailure, InferenceOptions, LoadedClassifier, load_classifier
from models.runtime import pick_device, worker_cores
from transforms import contract
from transforms.beam_io import COUNTS, DEAD_LETTERS, METRICS_NAMESPACE, add_languages, language_counts
from transforms.language import runs_on, script_shares
from transforms.reuse import take_carried
from transforms.records import DeadLetter, classifier_source


@dataclass(frozen=True)
class FailedRow:
    """A row one of the classifiers could not run (the first that failed, and why)."""

    row: dict
    classifier: str
    reason: str


@dataclass(frozen=True)
class LabeledBatch:
    """A batch after inference: its labeled rows, its failed ones, and per classifier the texts
    its model ran on (inferences, failed ones included) and their tokens, and of the rows kept
    (`rows`) those that carry its labels (labeled) and those with a text that routing kept from
    it (skipped_language: outside its languages or script). Per classifier, labeled +
    skipped_language + the kept rows with an empty text = len(rows)."""

    rows: list[dict]
    failed: list[FailedRow]
    inferences: dict[str, int]
    tokens: dict[str, int]
    labeled: dict[str, int]
    skipped_language: dict[str, int]
    carried: dict[str, int]  # per classifier, the rows whose committed columns it carried


class LoadedClassifiers:
    """The model of the handler: classifier name -> LoadedClassifier."""

    def __init__(self, classifiers: Mapping[str, LoadedClassifier]):
        self.classifiers = dict(classifiers)
        self.tokenizer_thread = None  # created on first use: an executor is not picklable

    def classify_all(self, texts: Mapping[str, Sequence[str]], on_done: Optional[Callable[[int], None]] = None
                     ) -> dict[str, tuple[list, dict[str, int]]]:
        """name -> (columns or InferenceFailure per text, stats) for each classifier's texts;
        on_done(n) after each sub-batch of n texts (for the progress lines).
        Where a core is spare (tokenize_ahead), every classifier's texts are tokenized in order on
        a thread of its own while the models run on this one: the Rust tokenizers and torch both
        release the GIL, so the next classifier's tokenization overlaps this one's forward passes."""
        batches = {name: batch for name, batch in texts.items() if batch}
        if not tokenize_ahead(self.classifiers.values()):
            return {name: self.classifiers[name].classify(batch, on_done=on_done) for name, batch in batches.items()}
        if self.tokenizer_thread is None:
            self.tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        tokenized = {name: self.tokenizer_thread.submit(self.classifiers[name].tokenize_each, batch)
                     for name, batch in batches.items()}
        return {name: self.classifiers[name].classify(batch, tokenized[name].result(), on_done)
                for name, batch in batches.items()}


def tokenize_ahead(classifiers: Iterable[LoadedClassifier]) -> bool:
    """Whether tokenizing on a thread of its own pays: the models run on a GPU, or torch's CPU
    threads leave a core of this process free (--cpu-threads below the cores). When torch's
    threads take every core, a tokenizer thread only takes turns with them and slows the forward
    passes down (benchmarks/throughput.py, small shapes, shows by how much on a given machine)."""
    import torch

    return any(c.device == "cuda" for c in classifiers) or torch.get_num_threads() < worker_cores()


class BatchShare:
    """on_done for classify_all: each sub-batch of n of a batch's `texts` (summed over its classifiers)
    ticks `progress` by its share of the batch's `posts`; `ticked` is what it has ticked so far."""

    def __init__(self, posts: int, texts: int, progress):
        self.per_text = posts / texts if texts else 0.0
        self.progress, self.ticked = progress, 0.0

    def __call__(self, n: int) -> None:
        if self.progress is not None:
            self.ticked += n * self.per_text
            self.progress.tick(n * self.per_text)


def clean_text_length(row: dict) -> int:
    """Beam's batch_length_fn: characters of the row's cleaned text."""
    return len(row.get("clean_text") or "")


def wants_shared_model(device: str) -> bool:
    """Whether the classifiers run on CUDA, where one copy per machine is shared by its processes.
    Decided where the pipeline is built: Dataflow GPU runs pass --device cuda."""
    if device == "auto":
        return pick_device("auto") == "cuda"
    return device == "cuda"  # not checked here: the launcher of a GPU run may have no GPU itself


class ClassifiersHandler(ModelHandler[dict, Any, LoadedClassifiers]):
    """A ModelHandler for the classifiers of a run (checkpoints: name -> resolved checkpoint),
    fed rows; `routes`: name -> the languages it runs on (None: every language). `forward`
    replaces the forward pass of every classifier (tests inject faults with it). `progress`: what
    counts the posts labeled (transforms.beam_io.ProgressFn), ticked after each sub-batch."""

    def __init__(self, checkpoints: Mapping[str, ResolvedCheckpoint],
                 routes: Optional[Mapping[str, Optional[frozenset[str]]]] = None,
                 options: InferenceOptions = InferenceOptions(), forward: Optional[Callable] = None,
                 progress=None, carried: Iterable[str] = ()):
        batching: dict[str, Any] = {}
        if options.length_buckets:
            batching = dict(batch_length_fn=clean_text_length, batch_bucket_boundaries=sorted(options.length_buckets),
                            max_batch_duration_secs=options.bucket_wait_secs)
        shared = wants_shared_model(options.device)
        super().__init__(min_batch_size=options.batch_size, max_batch_size=options.batch_size,
                         large_model=shared, model_copies=options.model_copies if shared else None, **batching)
        self.checkpoints = dict(checkpoints)
        self.routes = {name: (routes or {}).get(name) for name in self.checkpoints}
        self.options = options
        self.forward = forward
        self.progress = progress
        self.carried = frozenset(carried)  # classifiers whose committed columns rows may carry (transforms.reuse)

    def load_model(self) -> LoadedClassifiers:
        return LoadedClassifiers({name: load_classifier(checkpoint, self.options, self.forward)
                                  for name, checkpoint in self.checkpoints.items()})

    def run_inference(self, batch: Sequence[dict], model: LoadedClassifiers,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[LabeledBatch]:
        add_languages(batch)
        carrying = set()
        for i, row in enumerate(batch):
            columns = take_carried(row)
            if columns is not None:
                row.update(columns)
                carrying.add(i)
        shares = script_shares([row.get("clean_text") for row in batch])
        routed = {name: [i for i, row in enumerate(batch)
                         if row.get("clean_text") and runs_on(row.get("lang"), languages, shares[i])]
                  for name, languages in self.routes.items()}
        positions = {name: [i for i in present if not (name in self.carried and i in carrying)]
                     for name, present in routed.items()}
        texts = {name: [batch[i]["clean_text"] for i in present] for name, present in positions.items()}
        share = BatchShare(len(batch), sum(map(len, texts.values())), self.progress)
        # a shared model (CUDA) runs in another process: its batches are ticked whole
        results = model.classify_all(texts, share) if isinstance(model, LoadedClassifiers) else model.classify_all(texts)
        if self.progress is not None:
            self.progress.tick(len(batch) - share.ticked)
        failed: dict[int, FailedRow] = {}
        tokens = dict.fromkeys(self.checkpoints, 0)
        for name, (columns, stats) in results.items():
            for i, values in zip(positions[name], columns):
                if isinstance(values, InferenceFailure):
                    failed.setdefault(i, FailedRow(batch[i], name, values.reason))
                else:
                    batch[i].update(values)
            tokens[name] = stats["real_tokens"]
            namespace = self.metrics_namespace(name)
            for stat, value in stats.items():
                if value:
                    Metrics.counter(namespace, stat).inc(value)
        for name, present in positions.items():
            Metrics.counter(self.metrics_namespace(name), "texts").inc(len(present))
            Metrics.counter(self.metrics_namespace(name), "empty_texts").inc(len(batch) - len(present))
        kept = [i for i in range(len(batch)) if i not in failed]
        with_text = sum(1 for i in kept if batch[i].get("clean_text"))
        labeled = {name: sum(1 for i in present if i not in failed) for name, present in routed.items()}
        carried = {name: len(routed[name]) - len(positions[name]) for name in self.checkpoints}
        return [LabeledBatch([batch[i] for i in kept], list(failed.values()),
                             {name: len(present) for name, present in positions.items()}, tokens, labeled,
                             {name: with_text - n for name, n in labeled.items()}, carried)]

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(row["clean_text"].encode("utf-8")) for row in batch if row.get("clean_text"))

    @staticmethod
    def metrics_namespace(name: str) -> str:
        """Where a classifier's counters go (real_tokens, padded_tokens, sub_batches, ...)."""
        return contract.classifier_namespace(name)

    def get_metrics_namespace(self) -> str:
        return contract.CLASSIFIERS_NAMESPACE


class SplitResultsFn(beam.DoFn):
    """LabeledBatch -> its labeled rows as one list (main output), the dead letters of its failed
    rows (DEAD_LETTERS) and its in-pipeline counts (COUNTS: inferences_<name>, tokens_<name>,
    labeled_<name>, skipped_language_<name>, and posts per language, failed ones included)."""

    def __init__(self):
        self.dead = Metrics.counter(METRICS_NAMESPACE, contract.DEAD_LETTERED)

    def process(self, result: LabeledBatch):
        for failed in result.failed:
            self.dead.inc()
            raw = json.dumps({"id": failed.row["id"], "text": failed.row["text"]}, ensure_ascii=False)
            letter = DeadLetter(classifier_source(failed.classifier), None, failed.reason, raw)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter.to_json())
        for name, count in result.inferences.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.inferences_key(name), count))
        for name, count in result.tokens.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.tokens_key(name), count))
        for name in result.labeled:
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.labeled_key(name), result.labeled[name]))
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.skipped_language_key(name), result.skipped_language[name]))
        for name, count in result.carried.items():
            yield beam.pvalue.TaggedOutput(COUNTS, (contract.carried_key(name), count))
        for pair in language_counts([*result.rows, *(failed.row for failed in result.failed)]):
            yield beam.pvalue.TaggedOutput(COUNTS, pair)
        if result.rows:
            yield result.rows


class Classify(beam.PTransform):
    """rows -> lists of labeled rows, one per batch (main output), dead letters (DEAD_LETTERS) and
    counts (COUNTS), through one RunInference with the handler."""

    def __init__(self, handler: ClassifiersHandler):
        super().__init__()
        self.handler = handler

    def expand(self, rows):
        return (rows
                | "RunInference" >> RunInference(self.handler)
                | "Split" >> beam.ParDo(SplitResultsFn()).with_outputs(DEAD_LETTERS, COUNTS, main="rows"))

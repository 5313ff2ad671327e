"""Labeling one batch of rows with every classifier of a run (label_batch): what the run's one
RunInference ModelHandler (pipelines.beam_steps.ClassifiersHandler) does with each batch.

The model is the set of loaded classifiers (models.classifier.LoadedClassifier). Each element is
a row (a dict with `text`, `clean_text` and the input's `lang`, if any); for each batch, the rows
get their languages (transforms.language.add_languages: detected for the batch at once), then
every classifier gets the cleaned texts of the rows in its languages and script
(transforms.language.runs_on), runs them in length-sorted sub-batches, and its columns go into
the rows. So each post crosses Beam's inference machinery once, whatever the number of
classifiers, and a classifier's empty or out-of-language rows cost nothing (their columns stay
absent: null in the output).
Under --skip-if-done a row may carry the committed columns of its cleaned text
(transforms.reuse): the classifiers named in `carried` take those instead of running, and
count them as carried.

label_batch returns one LabeledBatch per batch: the rows with their columns, the FailedRows
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

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

from models.classifier import InferenceFailure, InferenceOptions, LoadedClassifier, cpu_choice
from models.runtime import pick_device, worker_cores
from transforms.contract import CLEAN_TEXT, LANG
from transforms.language import add_languages, runs_on, script_shares
from transforms.reuse import take_carried


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
    return len(row.get(CLEAN_TEXT) or "")


def wants_shared_model(device: str) -> bool:
    """Whether the classifiers run on CUDA, where one copy per machine is shared by its processes.
    Decided where the pipeline is built: Dataflow GPU runs pass --device cuda."""
    if device == "auto":
        return pick_device("auto") == "cuda"
    return device == "cuda"  # not checked here: the launcher of a GPU run may have no GPU itself


def backend_record(options: InferenceOptions) -> dict[str, str]:
    """What the run's models run on, as the manifest (`inference`) and the Parquet metadata name it:
    the CPU backend and precision (models.classifier.cpu_choice), or torch under bf16/fp16
    autocast on CUDA. Settled where the pipeline is built, like wants_shared_model."""
    if wants_shared_model(options.device):
        return {"backend": "torch", "precision": "autocast"}
    backend, precision = cpu_choice(options)
    return {"backend": backend, "precision": precision}


def label_batch(batch: Sequence[dict], model, routes: Mapping[str, Optional[frozenset[str]]],
                carried: frozenset[str] = frozenset(), progress=None) -> tuple[LabeledBatch, dict[str, dict]]:
    """The rows of one batch labeled by every classifier of `routes` (name -> the languages it
    runs on, None: every language) with `model` (LoadedClassifiers, or Beam's proxy of a shared
    one); `carried`: the classifiers whose committed columns rows may carry; `progress` (a
    pipelines.beam_steps.ProgressFn) is ticked after each sub-batch. Returns the LabeledBatch and
    each classifier's stats from its model (real_tokens, padded_tokens, sub_batches, ...), for
    the metrics. The rows are changed in place."""
    add_languages(batch)
    carrying = set()
    for i, row in enumerate(batch):
        columns = take_carried(row)
        if columns is not None:
            row.update(columns)
            carrying.add(i)
    shares = script_shares([row.get(CLEAN_TEXT) for row in batch])
    routed = {name: [i for i, row in enumerate(batch)
                     if row.get(CLEAN_TEXT) and runs_on(row.get(LANG), languages, shares[i])]
              for name, languages in routes.items()}
    positions = {name: [i for i in present if not (name in carried and i in carrying)]
                 for name, present in routed.items()}
    texts = {name: [batch[i][CLEAN_TEXT] for i in present] for name, present in positions.items()}
    share = BatchShare(len(batch), sum(map(len, texts.values())), progress)
    # a shared model (CUDA) runs in another process: its batches are ticked whole
    results = model.classify_all(texts, share) if isinstance(model, LoadedClassifiers) else model.classify_all(texts)
    if progress is not None:
        progress.tick(len(batch) - share.ticked)
    failed: dict[int, FailedRow] = {}
    tokens = dict.fromkeys(routes, 0)
    stats_by_classifier = {}
    for name, (columns, stats) in results.items():
        for i, values in zip(positions[name], columns):
            if isinstance(values, InferenceFailure):
                failed.setdefault(i, FailedRow(batch[i], name, values.reason))
            else:
                batch[i].update(values)
        tokens[name] = stats["real_tokens"]
        stats_by_classifier[name] = stats
    kept = [i for i in range(len(batch)) if i not in failed]
    with_text = sum(1 for i in kept if batch[i].get(CLEAN_TEXT))
    labeled = {name: sum(1 for i in present if i not in failed) for name, present in routed.items()}
    carried_rows = {name: len(routed[name]) - len(positions[name]) for name in routes}
    return LabeledBatch([batch[i] for i in kept], list(failed.values()),
                        {name: len(present) for name, present in positions.items()}, tokens, labeled,
                        {name: with_text - n for name, n in labeled.items()}, carried_rows), stats_by_classifier

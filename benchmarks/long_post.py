"""Per-record cost of one very long post (default 20 MB) against a long tweet, the way main
handled it before issue 10 (clean_text on the whole text, then each of the four classifiers'
tokenizers on the whole cleaned text, truncating to max_length afterwards) and now
(clean_for_models, then LoadedClassifier.tokenize). Prints seconds per record.

    python -m benchmarks.long_post [--mb 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from models.checkpoints import resolve
from models.classifier import InferenceOptions, load_classifier
from models.tiny_checkpoints import build_all
from transforms.cleaning import clean_for_models, clean_text

SENTENCE = "Vote on the budget today &amp; tell @mp what you think 😂 https://t.co/abc #policy! "


def seconds(function, repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) / repeat


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20, help="size of the long post in MB (default 20)")
    args = parser.parse_args(argv)
    long_post = SENTENCE * int(args.mb * 1e6 / len(SENTENCE.encode()))
    tweet = SENTENCE * 3
    with tempfile.TemporaryDirectory() as directory:
        loaded = [load_classifier(resolve(name, path), InferenceOptions(device="cpu"))
                  for name, path in build_all(directory).items()]
        max_tokens = max(model.max_length for model in loaded)

        def before(text):
            cleaned = clean_text(text)
            for model in loaded:
                model.tokenizer([cleaned], truncation=True, max_length=model.max_length)

        def after(text):
            cleaned = clean_for_models(text, max_tokens)
            for model in loaded:
                model.tokenize([cleaned])

        print(f"post of {len(long_post.encode()) / 1e6:.1f} MB, tweet of {len(tweet)} characters; "
              f"4 classifiers, max_length {max_tokens}")
        for name, path in (("before (main)", before), ("after (issue 10)", after)):
            print(f"{name:18s} long post {seconds(lambda: path(long_post)):8.3f} s/record   "
                  f"tweet {seconds(lambda: path(tweet), 200) * 1e3:7.3f} ms/record")


if __name__ == "__main__":
    main()

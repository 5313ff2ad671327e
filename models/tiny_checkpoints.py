"""Build tiny random-weight checkpoints for the four classifiers, offline.

    python -m models.tiny_checkpoints OUTPUT_DIR

writes OUTPUT_DIR/{politics,stars,sentiment,emotion}/ (save_pretrained format: config.json,
tokenizer files, model.safetensors) and OUTPUT_DIR/models.json for `--models`. The shapes
mirror the published architectures (BERT, BERT with a CJK vocabulary, DistilBERT, RoBERTa)
at toy size; the tokenizers are trained on the fly. THE LABELS THEY GIVE MEAN NOTHING:
they exist for tests, benchmarks and the offline example.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from models.classifiers import PUBLISHED_NAMES, classifier_for
from models.heads import MULTI_LABEL

_WORDS = (
    "the a and to of in is it you that for on with this was are be at not have but so my we they "
    "government election vote minister party rakyat economy price tax job corruption police safety "
    "school university religion mosque church climate flood river forest democracy leader race "
    "happy sad angry love hate great terrible good bad awful amazing excited afraid joy fear "
    "food delivery hotel room service clean dirty fast slow late cold hot staff friendly "
    "face_with_tears_of_joy red_heart thumbs_up smiling_face_with_heart-eyes fire crying_face "
    "user http www com https today tomorrow yesterday never always really very much more less"
).split()
# Common CJK characters (delivery and hotel reviews) so the `stars` tokenizer has a Chinese vocabulary.
_CJK = "好不错很差服务酒店房间干净送餐速度快慢味道满意推荐一般还可以早餐位置方便价格贵便宜环境设施前台热情态度冷菜凉了再也不会来"


def training_corpus(seed: int = 0, size: int = 3000) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(size):
        words = rng.choices(_WORDS, k=rng.randint(3, 25))
        if rng.random() < 0.3:
            words.append("".join(rng.choices(_CJK, k=rng.randint(2, 20))))
        lines.append(" ".join(words))
    lines.append(_CJK)
    return lines


def wordpiece_tokenizer(lowercase: bool, vocab_size: int = 1200, texts=None, min_frequency: int = 1):
    """A BERT WordPiece tokenizer trained on `texts` (default: a small built-in corpus)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    raw = BertWordPieceTokenizer(lowercase=lowercase, handle_chinese_chars=True)
    raw.train_from_iterator(texts or training_corpus(), vocab_size=vocab_size, min_frequency=min_frequency,
                            show_progress=False, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return BertTokenizerFast(tokenizer_object=raw._tokenizer, do_lower_case=lowercase, model_max_length=512,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                             mask_token="[MASK]")


def byte_bpe_tokenizer(vocab_size: int = 1200, texts=None, min_frequency: int = 1):
    """A RoBERTa byte-level BPE tokenizer trained on `texts` (default: a small built-in corpus)."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaTokenizerFast

    raw = ByteLevelBPETokenizer()
    raw.train_from_iterator(texts or training_corpus(), vocab_size=vocab_size, min_frequency=min_frequency,
                            show_progress=False, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    raw._tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", raw.token_to_id("</s>")), ("<s>", raw.token_to_id("<s>")))
    return RobertaTokenizerFast(tokenizer_object=raw._tokenizer, model_max_length=512, bos_token="<s>",
                                eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>")


EMOTION_LABELS = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
                  "sadness", "surprise", "trust", "neutral", "admiration", "gratitude"]


def label_fields(name: str, emotion_labels: list[str] | None = None, num_labels: int | None = None,
                 problem_type: str | None = None) -> dict:
    """The label part of a checkpoint config of classifier `name` (id2label, label2id and what its
    head reads, such as topics or problem_type); see build_tiny_checkpoint for the arguments."""
    classifier = classifier_for(name)
    extra = dict(classifier.label_config(classifier.fixed_labels or emotion_labels or EMOTION_LABELS))
    problem_type = problem_type or classifier.problem_type
    if problem_type == MULTI_LABEL:
        extra["problem_type"] = problem_type
    if num_labels is not None:
        extra["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    id2label = {int(i): label for i, label in extra.pop("id2label").items()}
    return dict(id2label=id2label, label2id={v: k for k, v in id2label.items()}, **extra)


def build_tiny_checkpoint(name: str, output: Path, seed: int = 0, hidden: int = 32, layers: int = 2,
                          emotion_labels: list[str] | None = None, num_labels: int | None = None,
                          problem_type: str | None = None) -> Path:
    """Save a random-weight checkpoint for classifier `name` under `output`; return its path.
    `emotion_labels`: the labels of a classifier that does not fix them (emotion, or any generic
    name, which gets a BERT); `problem_type`: a generic classifier's (multi_label_classification).
    `num_labels` overrides the spec's label count (tests use it to build misfits)."""
    import torch
    from transformers import (AutoModelForSequenceClassification, BertConfig, DistilBertConfig,
                              RobertaConfig)

    torch.manual_seed(seed)
    common = label_fields(name, emotion_labels, num_labels, problem_type)
    architecture = classifier_for(name).tiny_architecture
    if architecture == "roberta":
        tokenizer = byte_bpe_tokenizer()
        config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=514,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2, **common)
    elif architecture == "distilbert":
        tokenizer = wordpiece_tokenizer(lowercase=True)
        config = DistilBertConfig(vocab_size=len(tokenizer), dim=hidden, n_layers=layers, n_heads=2,
                                  hidden_dim=hidden * 2, max_position_embeddings=512, **common)
    else:
        tokenizer = wordpiece_tokenizer(lowercase=(architecture != "bert-cased"))
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512,
                            **common)
    model = AutoModelForSequenceClassification.from_config(config)
    target = Path(output) / name
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def build_all(output: Path, seed: int = 0) -> dict[str, str]:
    output = Path(output)
    paths = {name: str(build_tiny_checkpoint(name, output, seed=seed + i).resolve())
             for i, name in enumerate(PUBLISHED_NAMES)}
    (output / "models.json").write_text(json.dumps(paths, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    import sys

    from transformers.utils import logging as hf_logging

    script = "build-tiny-checkpoints"
    prog = script if Path(sys.argv[0] or "").name == script else "python -m models.tiny_checkpoints"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar, once per checkpoint
    for name, path in build_all(args.output, args.seed).items():
        print(f"{name}: {path}")
    print(f"models file: {args.output / 'models.json'} (random weights: the labels mean nothing)")


if __name__ == "__main__":
    main()

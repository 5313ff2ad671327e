"""A post's language, and which classifiers run on it: pure functions.

Detection is offline with py3langid (BSD; a naive Bayes model over byte n-grams that ships inside
the package), restricted to DETECTED (the languages common on social media; over all 97 of its
languages, short English tweets come out as Pidgin, Aragonese or Xhosa far too often). A post gets
`und` (undetermined) rather than a guess when detection is unsure: nothing left once URLs,
@mentions and #hashtags are set aside, letters of several scripts with none clearly dominant, or a
detector probability under MIN_PROBABILITY.
Routing (`runs_on`) also reads the script of what the model sees: a classifier whose languages
are all written in known scripts (stars: zh, Han; sentiment: en, Latin) runs only on posts whose
cleaned text has a fair share of letters in them. An `und` post then runs the classifiers its
script fits: routing skips a classifier by language only when detection is sure.

Two forms, same answers: `detect` / `post_language` for one post (the reference; its time goes
mostly to py3langid's Python loop over the post's bytes) and `detect_many` / `post_languages` for a
batch (several times cheaper a post: py3langid's automaton walked over every byte of the batch at
once with numpy, see "py3langid's classify for many texts" below). Memory stays linear in the
batch's bytes whatever its longest post. Figures: `python -m benchmarks.language_routing`.
See docs/output-schema.md (the `lang` column) and docs/architecture.md (routing).
"""
from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

import numpy as np
import regex

from transforms import contract

LOG = logging.getLogger(__name__)

UNDETERMINED = "und"
MIN_PROBABILITY = 0.5  # below this the detector's answer counts as unsure (benchmarks/language_routing.py)
DETECTED = tuple(
    "en zh ja ko ms id es pt fr de it nl ru ar hi bn ur ta th vi tr pl uk fa he el sv da no fi ro hu cs tl sw".split())
MIN_SCRIPT_SHARE = 0.8  # the main script's share of the letters; below this the post is mixed
_SET_ASIDE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+", re.UNICODE)
_ASCII_LETTER = re.compile(r"[A-Za-z]")


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(DETECTED)
    return identifier


# The coarse scripts of letters, one home for their ranges (inclusive): `script` reads them one
# letter at a time, `_letter_scripts` turns them into a table over every code point.
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
_LATIN_RANGES = ((0x0000, 0x024F), (0x1E00, 0x1EFF))
_SCRIPTS = ("cjk", "latin", "other")  # the table's codes 1, 2, 3 (0: not a letter)


def script(char: str) -> str:
    """A coarse script name for a letter: 'cjk' (Han, kana, hangul), 'latin' or 'other'."""
    code = ord(char)
    if any(low <= code <= high for low, high in _CJK_RANGES):
        return "cjk"
    if any(low <= code <= high for low, high in _LATIN_RANGES):
        return "latin"
    return "other"


@lru_cache(maxsize=1)
def _letter_scripts() -> np.ndarray:
    """Per code point: 0 when it is not a letter (str.isalpha), else 1 + its index in _SCRIPTS.
    1.1 MB, built once per process in ~0.1 s."""
    table = np.full(sys.maxunicode + 1, 1 + _SCRIPTS.index("other"), dtype=np.uint8)
    for name, ranges in (("latin", _LATIN_RANGES), ("cjk", _CJK_RANGES)):
        for low, high in ranges:
            table[low:high + 1] = 1 + _SCRIPTS.index(name)
    letters = np.frombuffer(bytes(map(str.isalpha, map(chr, range(sys.maxunicode + 1)))), dtype=np.bool_)
    table[~letters] = 0
    return table


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _share(letters_per_script) -> float:
    total = int(sum(letters_per_script))
    return int(max(letters_per_script)) / total if total else 0.0


def main_script_share(text: str) -> float:
    """The share of the text's letters that are in its most common script (0.0 without letters)."""
    if text.isascii():  # every ASCII letter is Latin
        return 1.0 if _ASCII_LETTER.search(text) else 0.0
    return _share(np.bincount(_letter_scripts()[_code_points(text)], minlength=4)[1:])


def main_script_shares(texts: Sequence[str], chunk: int = 1 << 20) -> list[float]:
    """[main_script_share(text) for text in texts], counted for all texts at once (`chunk`
    characters at a time, so one huge text costs no more memory than that)."""
    return [_share(row) for row in _code_counts(texts, _letter_scripts(), chunk)[:, 1:].tolist()]


def _code_counts(texts: Sequence[str], table: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Per text, how many of its characters have each of the table's codes (0..3): counted for
    all texts at once, `chunk` characters at a time (one huge text costs no more memory)."""
    ends = np.cumsum([len(text) for text in texts], dtype=np.intp)
    counts = np.zeros((len(texts), 4), dtype=np.intp)
    joined = "".join(texts)
    for start in range(0, len(joined), chunk):
        codes = table.take(_code_points(joined[start:start + chunk]))
        owner = _owners(ends, start, start + len(codes))
        counts += np.bincount(owner * 4 + codes, minlength=4 * len(texts)).reshape(-1, 4)
    return counts


def detect(text: str | None) -> str:
    """The ISO 639-1 code of the text's language, or UNDETERMINED where detection is unsure.
    The per-text reference for `detect_many`."""
    body = _SET_ASIDE.sub(" ", text or "")
    if main_script_share(body) < MIN_SCRIPT_SHARE:  # no letters at all, or mixed scripts
        return UNDETERMINED
    code, probability = _identifier().classify(body)
    return code if probability >= MIN_PROBABILITY else UNDETERMINED


def detect_many(texts: Sequence[str | None]) -> list[str]:
    """[detect(text) for text in texts], computed for the whole list at once (same results,
    several times cheaper a post on batches of hundreds)."""
    bodies = [_SET_ASIDE.sub(" ", text or "") for text in texts]
    langs = [UNDETERMINED] * len(texts)
    lettered = [i for i, share in enumerate(main_script_shares(bodies)) if share >= MIN_SCRIPT_SHARE]
    codes, probabilities = classify_many([bodies[i] for i in lettered])
    for i, code, probability in zip(lettered, codes, probabilities):
        if probability >= MIN_PROBABILITY:
            langs[i] = code
    return langs


# ---- py3langid's classify for many texts at once
# py3langid walks a DFA over each text's UTF-8 bytes in a Python loop, counts the feature each
# visited state outputs, and scores log1p(count) @ nb_ptc[feature] + nb_pc, then normalizes. The
# DFA is an Aho-Corasick automaton over byte n-grams: a state is the longest suffix of what was
# read that starts some n-gram, so the state at a byte depends on the last WINDOW bytes alone
# (WINDOW: the deepest state). `_visited_features` therefore walks every byte position of many
# texts at once, WINDOW numpy steps per chunk of positions, whatever the texts' lengths. The
# counts are then scored with the same numpy calls as py3langid, text by text (a float32
# matrix product's rounding depends on its operands' order and shape, so the probabilities are
# py3langid's to the bit), and normalized for all texts at once.
_GROUP_BYTES = 1 << 18  # texts scored together: bounds the gathered nb_ptc rows (~140 bytes per feature)
_CHUNK_POSITIONS = 1 << 18  # byte positions walked together: bounds the DFA's arrays


@lru_cache(maxsize=1)
def _model():
    """py3langid's model as numpy arrays: next state per (row of a state << 8) + byte (a view of
    py3langid's own array), row of each state << 8, feature each state outputs (-1: none), the
    features' class weights (nb_ptc as float32, the type py3langid's product computes in, one
    opaque item per feature: gathering rows is then one copy each), and WINDOW."""
    identifier = _identifier()
    assert not identifier._alias_pairs, "py3langid merges aliased columns (srl/sr); none are among DETECTED"
    next_state = np.frombuffer(identifier.tk_nextmove, dtype=np.uint32)
    row_base = np.asarray(identifier.tk_row, dtype=np.intp) << 8
    output = np.asarray(identifier.tk_output, dtype=np.intp)
    window, depth, frontier = 0, np.full(len(output), -1), np.array([0])
    depth[0] = 0
    while len(frontier):  # breadth first from the start state: a state's depth is its n-gram's length
        reached = np.zeros(len(output), dtype=np.bool_)
        for part in range(0, len(frontier), 4096):
            reached[next_state.take((row_base[frontier[part:part + 4096], None] + np.arange(256)).ravel())] = True
        frontier = np.flatnonzero(reached & (depth < 0))
        window += bool(len(frontier))
        depth[frontier] = window
    class_weights = np.ascontiguousarray(identifier.nb_ptc, dtype=np.float32)
    rows = class_weights.view(np.dtype((np.void, class_weights.strides[0]))).ravel()
    return next_state, row_base, output, rows, window


def classify_many(texts: Sequence[str]) -> tuple[list[str], list[float]]:
    """Each text's (language, probability) as `_identifier().classify(text)` gives it (same
    numbers), for all texts at once: the codes and the probabilities, in the texts' order."""
    identifier = _identifier()
    encoded = [identifier._encode(text) for text in texts]  # py3langid's own: NFC, UTF-8, lowercase if all caps
    probabilities = np.zeros((len(texts), len(identifier.nb_classes)), dtype=np.float32)
    group, size = [], 0
    for i, data in enumerate(encoded + [None]):
        if group and (data is None or size + len(data) > _GROUP_BYTES):
            probabilities[group] = _probabilities([encoded[j] for j in group])
            group, size = [], 0
        if data is not None:
            group.append(i)
            size += len(data)
    best = probabilities.argmax(axis=1)
    return [identifier.nb_classes[i] for i in best], probabilities[np.arange(len(texts)), best].tolist()


def _probabilities(encoded: list[bytes]) -> np.ndarray:
    """py3langid's normalized class probabilities (LanguageIdentifier._decide) of each text."""
    identifier, class_weights = _identifier(), _model()[3]
    classes = len(identifier.nb_classes)
    lengths = np.array([len(data) for data in encoded], dtype=np.intp)
    text, feature, count = _visited_features(b"".join(encoded), lengths)
    scores = np.zeros((len(encoded), classes), dtype=np.float32)
    weights = np.log1p(count.astype(np.float32))
    rows = class_weights[feature].view(np.float32).reshape(-1, classes)
    bounds = np.searchsorted(text, np.arange(len(encoded) + 1)).tolist()
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        if end > start:  # no feature: py3langid's fill, 0.0
            np.matmul(weights[start:end], rows[start:end], out=scores[i])  # py3langid's product
    scores[np.diff(bounds) > 0] += identifier.nb_pc
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1).astype(np.float64))).astype(np.float32)[:, None]
    np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def _owners(ends: np.ndarray, start: int, stop: int) -> np.ndarray:
    """For items laid end to end (`ends`: where each one ends), the item each of the positions
    start..stop-1 belongs to."""
    first, last = np.searchsorted(ends, [start, stop - 1], side="right").tolist()
    cuts = np.concatenate([[start], np.minimum(ends[first:last], stop), [stop]])
    return np.repeat(np.arange(first, last + 1), np.diff(cuts))


def _visited_features(data: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For texts laid end to end in `data` (byte lengths `lengths`): each text's distinct visited
    features with their counts, as three arrays (text, feature, count) ordered by text and, within
    a text, by first visit (py3langid's Counter order)."""
    next_state, row_base, output, _, window = _model()
    padded = np.frombuffer(bytes(window) + data, dtype=np.uint8)
    ends = np.cumsum(lengths)
    width, merged = len(output), None
    for start in range(0, len(data), _CHUNK_POSITIONS):
        positions = np.arange(start, min(start + _CHUNK_POSITIONS, len(data)))
        owner = _owners(ends, start, start + len(positions))
        offset = positions - (ends - lengths)[owner]
        near_start = np.flatnonzero(offset < window - 1)  # a text's first bytes: fewer than WINDOW before them
        state = np.zeros(len(positions), dtype=np.intp)
        for back in range(window - 1, -1, -1):  # the state at p: the DFA from the start over bytes p-back..p
            state = next_state.take(row_base.take(state) + padded[start + window - back:][:len(positions)])
            state[near_start[offset[near_start] < back]] = 0  # before the text's first byte: still at the start
        feature = output.take(state)
        seen = np.flatnonzero(feature >= 0)
        visits = _group((owner * width + feature)[seen], positions[seen], np.ones(len(seen), np.intp))
        merged = visits if merged is None else _group(*map(np.concatenate, zip(merged, visits)))
    if merged is None:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.intp)
    key, first, count = merged
    order = np.argsort(first)  # by text (texts lie in order), then by first visit
    return key[order] // width, key[order] % width, count[order]


def _group(keys: np.ndarray, firsts: np.ndarray, counts: np.ndarray):
    """Equal keys merged: the distinct keys, each one's smallest `firsts`, its summed `counts`."""
    order = np.argsort(keys)
    keys, firsts, counts = keys[order], firsts[order], counts[order]
    heads = np.flatnonzero(np.concatenate([keys[:1] == keys[:1], keys[1:] != keys[:-1]]))  # [] when none
    return keys[heads], np.minimum.reduceat(firsts, heads), np.add.reduceat(counts, heads)


def normalize(value) -> str | None:
    """A language given in the input ('en', 'EN', 'en-US', 'zh_Hant') -> its primary subtag
    ('en', 'zh'); None for a missing, empty or non-string value (the post is then detected)."""
    if not isinstance(value, str):
        return None
    primary = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return primary if primary.isalpha() else None


def post_language(text: str | None, given=None) -> str:
    """The post's `lang`: the input's value when it has a usable one, else detected."""
    return normalize(given) or detect(text)


def post_languages(texts: Sequence[str | None], given: Sequence | None = None) -> list[str]:
    """[post_language(text, value) for text, value in zip(texts, given)] for a batch: the posts
    without a usable given value are detected together (detect_many). `given` None: none given."""
    langs = [normalize(value) for value in given] if given is not None else [None] * len(texts)
    if len(langs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(langs)} given languages")
    missing = [i for i, lang in enumerate(langs) if lang is None]
    for i, lang in zip(missing, detect_many([texts[i] for i in missing])):
        langs[i] = lang
    return langs


# The script each language is written in, for the languages written in one script only (a
# language not listed here, e.g. sr or ja, puts no script condition on its classifier).
LANGUAGE_SCRIPT = {"zh": "Han", **dict.fromkeys(
    "en ms id es pt fr de it nl tr pl sv da no fi ro hu cs tl sw vi af ca et lv lt sk sl hr sq ga cy is mt".split(),
    "Latin")}
# A classifier for languages of known scripts runs on a post only where those scripts hold at
# least this share of its letters: between the Han share of English posts with a Chinese place
# name or a kanji hashtag and that of Chinese reviews mixed with English words, with a wide margin
# to both on the shared corpus (benchmarks/language_routing.py prints both extremes).
MIN_SCRIPT_SHARE_FIT = 0.2
# What script_shares counts letters outside of first: _SET_ASIDE, and emoji as clean_text spells
# them (":red_heart:"), whose Latin letters would otherwise outweigh a short Chinese review.
_SET_ASIDE_FOR_SCRIPT = re.compile(_SET_ASIDE.pattern + r"|:[^\s:]+:", re.UNICODE)
_SCRIPT_CODES = ("Han", "Latin")  # the routing table's codes 1, 2 (0: not a letter, 3: another script)


@lru_cache(maxsize=1)
def _routing_scripts() -> np.ndarray:
    """Per code point: 1 Han, 2 Latin (Unicode's Script property, through `regex`), 3 any other
    letter (str.isalpha), 0 anything else. 1.1 MB, built once per process."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    table = np.where(_letter_scripts() > 0, 3, 0).astype(np.uint8)
    for code, name in enumerate(_SCRIPT_CODES, start=1):
        for run in regex.finditer(rf"\p{{Script={name}}}+", every):
            table[run.start():run.end()] = code
    return table


@lru_cache(maxsize=256)
def scripts_read(languages: frozenset[str] | None) -> frozenset[str] | None:
    """The scripts a classifier for `languages` reads (Unicode script names), or None where that
    puts no condition on a post: every language, or one whose script is not in LANGUAGE_SCRIPT."""
    if languages is None or any(lang not in LANGUAGE_SCRIPT for lang in languages):
        return None
    return frozenset(LANGUAGE_SCRIPT[lang] for lang in languages)


def script_shares(texts: Sequence[str | None]) -> list[dict[str, float]]:
    """For each cleaned text, the share of its letters in Han and in Latin script, counted outside
    URLs, @mentions, #hashtags and spelled-out emoji where there are letters there, else over
    the whole text ({}: no letters at all; an emoji-only post counts its emoji's names). For all
    texts at once."""
    texts = [text or "" for text in texts]
    counts = _code_counts([_SET_ASIDE_FOR_SCRIPT.sub(" ", text) for text in texts], _routing_scripts())
    bare = [i for i, row in enumerate(counts) if not row[1:].any()]  # letters only set aside, or none
    if bare:
        counts[bare] = _code_counts([texts[i] for i in bare], _routing_scripts())
    shares = []
    for row in counts[:, 1:].tolist():
        letters = sum(row)
        shares.append({name: n / letters for name, n in zip(_SCRIPT_CODES, row)} if letters else {})
    return shares


def runs_on(lang: str, languages: frozenset[str] | None, shares: Mapping[str, float]) -> bool:
    """Whether a classifier for `languages` (None: every language) runs on a post in `lang` whose
    cleaned text (what its model would see) has the script shares `shares` (script_shares): the
    post is in one of its languages or undetermined, and, where its languages are all written in
    known scripts, those scripts hold at least MIN_SCRIPT_SHARE_FIT of its letters. So a post without Han
    characters never reaches a classifier for Chinese alone, one without Latin letters never one
    for Latin-script languages, and an undetermined post runs the classifiers its script fits."""
    if languages is None:
        return True
    if lang != UNDETERMINED and lang not in languages:
        return False
    scripts = scripts_read(languages)
    if scripts is None:
        return True
    return sum(shares.get(name, 0.0) for name in scripts) >= MIN_SCRIPT_SHARE_FIT


def parse_languages(value: str) -> frozenset[str] | None:
    """'en,ms' -> {'en', 'ms'}; '*' or 'all' -> None (every language)."""
    if value.strip().lower() in ("*", "all"):
        return None
    codes = {normalize(part) for part in value.split(",") if part.strip()}
    if not codes or None in codes:
        raise ValueError(f"{value!r} is not a comma-separated list of language codes (or '*')")
    return frozenset(codes)


def describe(languages: frozenset[str] | None) -> str:
    return "all languages" if languages is None else ",".join(sorted(languages))


def describe_routing(languages: frozenset[str] | None) -> str:
    """The routing rule of a classifier as the manifest records it: its languages and, where runs_on
    also checks the script, that script (so --skip-if-done relabels partitions routed by language alone)."""
    scripts = scripts_read(languages)
    return describe(languages) + (f" ({'+'.join(sorted(scripts))} script)" if scripts else "")


def add_languages(rows: Sequence[dict]) -> None:
    """Each row's `lang`: the input's value when usable, else detected, for the rows together
    (post_languages: several times cheaper a post than one by one). Should the
    batch call ever fail, each row is detected alone, and a row whose detection fails is `und`
    (only the classifiers whose script fits its text run on it): one odd text never costs the batch its labels."""
    texts, given = [row.get(contract.TEXT) for row in rows], [row.get(contract.LANG) for row in rows]
    try:
        langs = post_languages(texts, given)
    except Exception:  # noqa: BLE001 - isolate the text that breaks detection
        langs = [_language_alone(text, value) for text, value in zip(texts, given)]
    for row, lang in zip(rows, langs):
        row[contract.LANG] = lang


def _language_alone(text, given) -> str:
    try:
        return post_language(text, given)
    except Exception:  # noqa: BLE001
        LOG.warning("language detection failed on a post; its lang is %r", UNDETERMINED, exc_info=True)
        return UNDETERMINED


def language_counts(rows: Iterable[dict]) -> list[tuple[str, int]]:
    """(lang:<code>, posts) pairs for the in-pipeline counts."""
    return [(contract.language_key(lang), n) for lang, n in Counter(row[contract.LANG] for row in rows).items()]

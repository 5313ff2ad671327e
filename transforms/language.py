"""A post's language, and which classifiers run on it: pure functions.

Detection is offline with py3langid (BSD; a naive Bayes model over byte n-grams that ships inside
the package; ~0.03 ms a post on one core), restricted to DETECTED (the languages common on social
media; over all 97 of its languages, short English tweets come out as Pidgin, Aragonese or Xhosa
far too often). A post gets `und` (undetermined) rather than a guess when detection is unsure:
nothing left once URLs, @mentions and #hashtags are set aside, letters of several scripts with
none clearly dominant, or a detector probability under MIN_PROBABILITY.
An `und` post runs every classifier: routing may skip a classifier only when it is sure.
See docs/output-schema.md (the `lang` column) and docs/architecture.md (routing).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

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


def script(char: str) -> str:
    """A coarse script name for a letter: 'cjk' (Han, kana, hangul), 'latin' or 'other'."""
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF \
            or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F:
        return "cjk"
    if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
        return "latin"
    return "other"


def main_script_share(text: str) -> float:
    """The share of the text's letters that are in its most common script (0.0 without letters)."""
    if text.isascii():  # every ASCII letter is Latin
        return 1.0 if _ASCII_LETTER.search(text) else 0.0
    counts: dict[str, int] = {}
    for char in text:
        if char.isalpha():
            name = script(char)
            counts[name] = counts.get(name, 0) + 1
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0


def detect(text: str | None) -> str:
    """The ISO 639-1 code of the text's language, or UNDETERMINED where detection is unsure."""
    body = _SET_ASIDE.sub(" ", text or "")
    if main_script_share(body) < MIN_SCRIPT_SHARE:  # no letters at all, or mixed scripts
        return UNDETERMINED
    code, probability = _identifier().classify(body)
    return code if probability >= MIN_PROBABILITY else UNDETERMINED


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


def runs_on(lang: str, languages: frozenset[str] | None) -> bool:
    """Whether a classifier for `languages` (None: every language) runs on a post in `lang`.
    An undetermined post runs every classifier."""
    return languages is None or lang == UNDETERMINED or lang in languages


def parse_languages(value: str) -> frozenset[str] | None:
    """'en,ms' -> {'en', 'ms'}; '*' or 'all' -> None (every language)."""
    if value.strip().lower() in ("*", "all"):
        return None
    codes = {normalize(part) for part in value.split(",") if part.strip()}
    if not codes or None in codes:
        raise ValueError(f"{value!r} is not a comma-separated list of language codes (or '*')")
    return frozenset(codes)


def routing_counts(lang_counts: Mapping[str, int],
                   routes: Mapping[str, frozenset[str] | None]) -> dict[str, dict[str, int]]:
    """Per classifier, from the posts' languages: posts it labeled and posts it skipped by
    language. The one place these manifest counts are computed (from `lang` counts alone)."""
    out = {}
    for name, languages in routes.items():
        labeled = sum(n for lang, n in lang_counts.items() if runs_on(lang, languages))
        out[name] = {"labeled": labeled, "skipped_language": sum(lang_counts.values()) - labeled}
    return out


def describe(languages: frozenset[str] | None) -> str:
    return "all languages" if languages is None else ",".join(sorted(languages))


"""Text cleaning: the one pure function every classifier's input goes through.

clean_text removes (or replaces with tokens) URLs and @mentions, turns emoji into
words with emoji.demojize, unescapes HTML entities, drops control characters,
normalizes to Unicode NFC and collapses whitespace. It is idempotent: the steps are
repeated until the text stops changing, so clean_text(clean_text(x)) == clean_text(x).
The common text (printable ASCII without '&': no emoji, no entities, nothing to normalize)
takes a fast path that skips the steps that cannot change it; a property test checks that
both paths agree.

clean_for_models bounds the cost of a long text: it cleans only a prefix of the raw text,
cut at a whitespace, growing the prefix until its cleaned form has more words than the models
can take tokens (every word gives at least one token). The rule it relies on, tested with
hypothesis: cleaning a prefix cut at whitespace gives the first words of cleaning the whole
text, so the first max_tokens tokens of the models' input do not change.
"""
from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import asdict, dataclass

import emoji

from transforms import contract

# http(s)://..., www.... and bare domains followed by a path (bit.ly/abc, t.co/xyz).
# The bare-domain form must not start inside a word, an email address or another URL.
URL_RE = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|(?<![\w@./-])(?:[a-z0-9-]+\.)+[a-z]{2,}/\S*",
    re.IGNORECASE,
)
# An @mention starts where no word character precedes it, so email addresses
# (name@example.com) are left alone while ".@user" and "(@user)" are mentions.
MENTION_RE = re.compile(r"(?<!\w)@\w+")
WHITESPACE_RE = re.compile(r"\s+")
# clean_for_models starts with this many raw characters per model token, and grows by GROWTH.
CHARS_PER_TOKEN_START = 16
GROWTH = 4
LAST_WHITESPACE_RE = re.compile(r"\s\S*\Z")
_MAX_PASSES = 10
# Anything but printable ASCII (less '&', which may start an HTML entity) and plain whitespace:
# a text without it is left unchanged by html.unescape, NFC, the control-character filter and
# emoji.demojize (every emoji has a non-ASCII character).
_NOT_PLAIN_RE = re.compile(r"[^\x20-\x25\x27-\x7e\t\n\r]")
# Control characters (category Cc: U+0000-001F, U+007F-009F) that are not whitespace.
_DROPPED_RE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
# The non-ASCII characters of every emoji: a text without any of them has no emoji to demojize
# (no emoji is ASCII alone), so most non-English text skips emoji.demojize's scan.
_EMOJI_CHARS = frozenset(c for e in emoji.EMOJI_DATA for c in e if not c.isascii())


@dataclass(frozen=True)
class CleaningOptions:
    """How clean_text treats a text. Stored in checkpoints trained by this project."""

    url_token: str | None = None  # None removes URLs; e.g. "http" replaces them
    mention_token: str | None = None  # None removes mentions; e.g. "@user" replaces them
    emoji_delimiters: tuple[str, str] = (":", ":")

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """In words, for messages: "URLs replaced by 'http', mentions removed"."""
        def treated(what: str, token: str | None) -> str:
            return f"{what} replaced by {token!r}" if token else f"{what} removed"

        emoji = "" if self.emoji_delimiters == (":", ":") else f", emoji between {'...'.join(self.emoji_delimiters)}"
        return f"{treated('URLs', self.url_token)}, {treated('mentions', self.mention_token)}{emoji}"

    @classmethod
    def from_dict(cls, data: dict) -> "CleaningOptions":
        data = dict(data)
        if "emoji_delimiters" in data:
            data["emoji_delimiters"] = tuple(data["emoji_delimiters"])
        return cls(**data)


DEFAULT_OPTIONS = CleaningOptions()


def _one_pass(text: str, options: CleaningOptions) -> str:
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = _DROPPED_RE.sub("", text)
    text = URL_RE.sub(f" {options.url_token} " if options.url_token else " ", text)
    text = MENTION_RE.sub(f" {options.mention_token} " if options.mention_token else " ", text)
    left, right = options.emoji_delimiters
    if not _EMOJI_CHARS.isdisjoint(text):
        text = emoji.demojize(text, delimiters=(f" {left}", f"{right} "))
    return WHITESPACE_RE.sub(" ", text).strip()


def _plain_pass(text: str, options: CleaningOptions) -> str:
    """_one_pass on a plain text (see _NOT_PLAIN_RE): only URLs, mentions and whitespace act."""
    text = URL_RE.sub(f" {options.url_token} " if options.url_token else " ", text)
    text = MENTION_RE.sub(f" {options.mention_token} " if options.mention_token else " ", text)
    return WHITESPACE_RE.sub(" ", text).strip()


def _is_plain(text: str | None) -> bool:
    return not text or not _NOT_PLAIN_RE.search(text)


def clean_text(text: str, options: CleaningOptions = DEFAULT_OPTIONS) -> str:
    """Return the text the classifiers see. Never raises for any str."""
    plain = _is_plain(text) and _is_plain(options.url_token) and _is_plain(options.mention_token)
    step = _plain_pass if plain else _one_pass
    for _ in range(_MAX_PASSES):
        cleaned = step(text, options)
        if cleaned == text:
            break
        text = cleaned
    return text


def clean_for_models(text: str, max_tokens: int, options: CleaningOptions = DEFAULT_OPTIONS) -> str:
    """clean_text of as much of the text as models reading at most max_tokens tokens can use:
    the cleaned words of a raw prefix cut at whitespace, once they are more than max_tokens
    (a word is at least one token), else of the whole text. A text without whitespace in its
    first max_tokens x CHARS_PER_TOKEN_START characters (one enormous word) is cut there."""
    cap = max(1, max_tokens) * CHARS_PER_TOKEN_START
    while len(text) > cap:
        head = text[:cap]
        last_space = LAST_WHITESPACE_RE.search(head)
        if last_space is None:
            return clean_text(head, options)  # no whitespace at all: one word longer than the cap
        cleaned = clean_text(head[:last_space.start()], options)
        if cleaned.count(" ") + 1 > max_tokens:
            return cleaned
        cap *= GROWTH
    return clean_text(text, options)


def prepare_row(record: dict, options: CleaningOptions, max_tokens: int) -> dict:
    """The record as the classifiers get it: with clean_text (what models reading at most
    max_tokens tokens see). Its `lang` (the input's value, if any) becomes the post's language in
    the inference step, for a whole batch at once (add_languages)."""
    record[contract.CLEAN_TEXT] = clean_for_models(record[contract.TEXT], max_tokens, options)
    return record

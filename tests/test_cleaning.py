"""clean_text: table-driven cases and properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.cleaning import MENTION_RE, URL_RE, CleaningOptions, clean_text

CASES = [
    # URLs of many shapes
    ("see https://example.com/a?b=1&c=2#frag now", "see now"),
    ("http://t.co/abc123", ""),
    ("visit www.example.org today", "visit today"),
    ("short link bit.ly/3xYz and more", "short link and more"),
    ("HTTPS://EXAMPLE.COM/PATH done", "done"),
    ("(https://example.com/x)", "("),
    ("two urls http://a.io/x,https://b.io/y end", "two urls end"),
    # @mentions with punctuation around them
    ("@User!! hello", "!! hello"),
    (".@user said so", ". said so"),
    ("thanks @jane_doe, @bob99.", "thanks , ."),
    ("(@someone) hi", "( ) hi"),
    # emails are not mentions
    ("mail me at jane.doe@example.com please", "mail me at jane.doe@example.com please"),
    # emoji, skin tones and ZWJ sequences
    ("so funny 😂😂", "so funny :face_with_tears_of_joy: :face_with_tears_of_joy:"),
    ("ok👍🏽", "ok :thumbs_up_medium_skin_tone:"),
    ("family 👨‍👩‍👧 day", "family :family_man_woman_girl: day"),
    ("🏳️‍🌈", ":rainbow_flag:"),
    # HTML entities, whitespace, NFC, control characters
    ("fish &amp; chips &lt;3 &quot;yum&quot;", 'fish & chips <3 "yum"'),
    ("  lots\t of \n\n space  ", "lots of space"),
    ("cafe\u0301", "caf\u00e9"),
    ("bell\x07 and null\x00 gone", "bell and null gone"),
    ("", ""),
    ("你好，世界", "你好，世界"),
]


@pytest.mark.parametrize("raw, expected", CASES)
def test_clean_text_cases(raw, expected):
    assert clean_text(raw) == expected


def test_tokens_replace_instead_of_removing():
    options = CleaningOptions(url_token="http", mention_token="@user")
    assert clean_text("@bob look https://x.com/y", options) == "@user look http"


def test_emoji_delimiters_are_configurable():
    assert clean_text("yes 👍", CleaningOptions(emoji_delimiters=("<", ">"))) == "yes <thumbs_up>"


def test_options_round_trip_through_a_dict():
    options = CleaningOptions(url_token="http", emoji_delimiters=("[", "]"))
    assert CleaningOptions.from_dict(options.to_dict()) == options


text_with_noise = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(["@user", ".@x!", "http://a.b/c", "www.x.org", "bit.ly/q", "😂", "👍🏽", "&amp;", "\u200d",
                         "a@b.com", "@", "//", "."]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text_with_noise)
def test_never_raises_and_is_idempotent(text):
    once = clean_text(text)
    assert isinstance(once, str)
    assert clean_text(once) == once


@settings(max_examples=300, deadline=None)
@given(text_with_noise)
def test_no_url_or_mention_left(text):
    cleaned = clean_text(text)
    assert URL_RE.search(cleaned) is None
    assert MENTION_RE.search(cleaned) is None


# ---- clean_for_models: a long text costs what the models can use, and nothing they see changes ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from transforms.cleaning import CHARS_PER_TOKEN_START, clean_for_models  # noqa: E402

PIECES = ["word", "a", "&amp;", "&nbsp;", "https://x.co/a b", "www.y.org", "bit.ly/z", "@bob", "a@b.com", "😂",
          "👨‍👩‍👧", "e\u0301", "\u0301", "\x07", "\u200d", " ", "  ", "\n", "\t", "\u2028", "\xa0", "\u3000",
          "#tag", "<b>", "...", "don't"]
hostile_texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=400).map("".join)


@settings(max_examples=300, deadline=None)
@given(hostile_texts, st.integers(1, 40))
def test_clean_for_models_gives_the_first_words_of_the_whole_text_cleaned(text, max_tokens):
    capped, whole = clean_for_models(text, max_tokens), clean_text(text)
    if capped == whole:
        return
    head = text[:max_tokens * CHARS_PER_TOKEN_START]
    if not any(c.isspace() for c in head):  # one word longer than the cap: cut there
        assert capped == clean_text(head)
        return
    words = capped.split(" ")
    assert len(words) > max_tokens
    assert whole.split(" ")[:len(words)] == words


def test_clean_for_models_gives_the_models_the_same_tokens(tiny_checkpoints):
    from transformers import AutoTokenizer

    import random

    rng = random.Random(5)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randrange(200, 1500))) for _ in range(8)]
    texts.append("word " * 60_000)  # a 300 kB post
    for name in ("sentiment", "emotion"):  # WordPiece and byte-level BPE
        tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoints[name])
        for max_tokens in (16, 64):
            for text in texts:
                full = tokenizer(clean_text(text), truncation=True, max_length=max_tokens)["input_ids"]
                capped = tokenizer(clean_for_models(text, max_tokens), truncation=True,
                                   max_length=max_tokens)["input_ids"]
                assert capped == full


def test_a_long_post_is_cleaned_only_as_far_as_the_models_read():
    text = "a fairly ordinary sentence about the vote " * 500_000  # 21 MB
    capped = clean_for_models(text, 512)
    assert 512 < len(capped.split(" ")) and len(capped) <= 512 * CHARS_PER_TOKEN_START
    assert text.startswith(capped)


# ---- the shortcuts (plain text, no emoji characters, control characters by regex) change nothing ----

import html  # noqa: E402
import unicodedata  # noqa: E402

import emoji  # noqa: E402

from transforms import cleaning  # noqa: E402
from transforms.cleaning import CleaningOptions  # noqa: E402


def every_step_once(text: str, options: CleaningOptions) -> str:
    """One pass of every step, unconditionally, with the libraries' own functions."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = "".join(c for c in text if not (unicodedata.category(c) == "Cc" and not c.isspace()))
    text = URL_RE.sub(f" {options.url_token} " if options.url_token else " ", text)
    text = MENTION_RE.sub(f" {options.mention_token} " if options.mention_token else " ", text)
    left, right = options.emoji_delimiters
    text = emoji.demojize(text, delimiters=(f" {left}", f"{right} "))
    return text


def every_step(text: str, options: CleaningOptions) -> str:
    """clean_text without any shortcut: every step, every pass."""
    for _ in range(cleaning._MAX_PASSES):
        cleaned = cleaning.WHITESPACE_RE.sub(" ", every_step_once(text, options)).strip()
        if cleaned == text:
            break
        text = cleaned
    return text


PLAIN_PIECES = ["word", "a", " ", "  ", "\n", "\t", "@bob", ".@x!", "a@b.com", "http://a.b/c", "www.x.org", "bit.ly/q",
                "#tag", "<b>", "don't", "&", "&amp;", "&#64;user", "😂", "👍🏽", "©", "#\ufe0f\u20e3", "é", "e\u0301",
                "\x07", "\x1c", "\x85", "\x9f", "\xa0", "\u2028", "酒店很干净", "㊗"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PLAIN_PIECES) | st.text(alphabet=st.characters(max_codepoint=127), max_size=4),
                max_size=30).map("".join),
       st.sampled_from([CleaningOptions(), CleaningOptions(url_token="http", mention_token="@user"),
                        CleaningOptions(mention_token="&amp;"), CleaningOptions(url_token="😂")]))
def test_the_plain_text_fast_path_agrees_with_every_step(text, options):
    assert clean_text(text, options) == every_step(text, options)


def test_the_control_character_pattern_is_category_cc_less_whitespace():
    for code in range(0x3000):
        char = chr(code)
        dropped = unicodedata.category(char) == "Cc" and not char.isspace()
        assert bool(cleaning._DROPPED_RE.fullmatch(char)) == dropped, hex(code)


def test_every_emoji_has_a_character_the_emoji_pattern_finds():
    assert all(not cleaning._EMOJI_CHARS.isdisjoint(e) for e in emoji.EMOJI_DATA)
    assert cleaning._EMOJI_CHARS.isdisjoint("酒店很干净，服务也很周到 the vote")


def test_common_posts_take_the_fast_path():
    assert cleaning._is_plain("@user the vote was a joke http://t.co/x #news\n")
    assert not any(cleaning._is_plain(t) for t in ("fish &amp; chips", "so good 😂", "café", "a\x07b", "a\u2028b"))


def test_cleaning_options_are_described_in_words_for_messages():
    from transforms.cleaning import CleaningOptions

    assert CleaningOptions(url_token="http").describe() == "URLs replaced by 'http', mentions removed"
    assert CleaningOptions(mention_token="@user", emoji_delimiters=("<", ">")).describe() == (
        "URLs removed, mentions replaced by '@user', emoji between <...>")

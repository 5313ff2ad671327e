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

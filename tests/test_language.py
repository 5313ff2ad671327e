"""Language detection and routing: the pure functions (properties), the detector against the shared
corpus's own `lang` field (a reference nobody here wrote), the batch detector against the one-by-one
one and against py3langid itself, routing by script (against the `regex` module's Unicode script
property and the shared corpus: no English post reaches stars), and whole runs where rows outside
a classifier's languages or script get nulls and no model time while the others keep the labels
of a run that routes nothing (--all-languages), with the manifest's counts recounted from the
written Parquet."""
from __future__ import annotations

import glob
import gzip
import itertools
import json
import os
import re
import tracemalloc
from collections import Counter
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from models.classifiers import PUBLISHED as SPECS
from pipelines.label_corpus import run
from pipelines.labeling import counter_values
from transforms import language
from transforms.cleaning import clean_text
from transforms.language import (DETECTED, MIN_SCRIPT_SHARE_FIT, UNDETERMINED, classify_many, detect, detect_many,
                                 main_script_share, main_script_shares, normalize, parse_languages, post_language,
                                 post_languages, runs_on, script, script_shares)

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "social_posts.jsonl.gz")
if not os.path.exists(CORPUS):
    CORPUS = "/work/shared/corpora/social_posts.jsonl.gz"
CODES = st.sampled_from(["en", "zh", "ms", "de", UNDETERMINED])
ROUTES = st.dictionaries(st.sampled_from(list(SPECS)), st.one_of(st.none(), st.frozensets(CODES, min_size=1)))


def runs(lang, languages, text):
    """runs_on for one cleaned text."""
    return runs_on(lang, languages, script_shares([text])[0])


SCRIPT_TEXT = st.text(st.sampled_from("ab中文éДя字 #@:_1😀"), max_size=30) | st.text(max_size=30)


@settings(max_examples=150, deadline=None)
@given(CODES, st.one_of(st.none(), st.frozensets(CODES, min_size=1)), SCRIPT_TEXT)
def test_routing_never_sends_a_post_to_a_classifier_for_a_script_it_lacks(lang, languages, text):
    han, latin = (bool(regex.search(rf"\p{{Script={name}}}", text)) for name in ("Han", "Latin"))
    if runs(lang, languages, text):
        assert languages is None or lang in languages or lang == UNDETERMINED
    if languages == frozenset({"zh"}) and not han:
        assert not runs(lang, languages, text)  # no Han character: never the Chinese classifier
    if languages is not None and languages <= {"en", "ms", "de"} and not latin:
        assert not runs(lang, languages, text)  # no Latin letter: never a Latin-script one
    if languages is None:
        assert runs(lang, languages, text)


@settings(max_examples=150, deadline=None)
@given(st.lists(SCRIPT_TEXT, max_size=8))
def test_script_shares_are_the_regex_modules_script_counts(texts):
    """Against the `regex` module's Unicode Script property, one text and one letter at a time."""
    def reference(text):
        for part in (re.sub(r"https?://\S+|www\.\S+|[@#]\w+|:[^\s:]+:", " ", text), text):
            letters = [c for c in part if c.isalpha() or regex.match(r"\p{Script=Han}|\p{Script=Latin}", c)]
            if letters:
                return {name: sum(bool(regex.match(rf"\p{{Script={name}}}", c)) for c in letters) / len(letters)
                        for name in ("Han", "Latin")}
        return {}
    assert script_shares(texts) == [pytest.approx(reference(text)) for text in texts]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_detect_never_fails_and_gives_a_code_or_und(text):
    lang = detect(text)
    assert lang == UNDETERMINED or (lang.isalpha() and lang.islower() and len(lang) == 2)


def test_given_languages_are_normalized_and_missing_ones_detected():
    assert [normalize(v) for v in ("en", "EN", " en-US ", "zh_Hant", "", None, 3, "??")] == \
           ["en", "en", "en", "zh", None, None, None, None]
    assert post_language("这家店的外卖很好吃，送得也很快", given=None) == "zh"
    assert post_language("这家店的外卖很好吃，送得也很快", given="ms") == "ms"  # the input's value wins
    assert parse_languages("en, ms") == frozenset({"en", "ms"}) and parse_languages("*") is None
    with pytest.raises(ValueError):
        parse_languages("en,1")


@pytest.mark.parametrize("text, runs_on_it", [
    ("", set()), ("12345", set()), ("@user https://t.co/x #tbt", {"politics", "sentiment", "emotion"}),
    ("👍👍👍", {"politics", "sentiment", "emotion"}),  # the models see the emoji spelled out in English
    ("这个手机太差了 the update broke it", set(SPECS)),
    ("Dinner date with sis @ Din Tai Fung Bellevue 鼎泰豐", {"politics", "sentiment", "emotion"})])
def test_unsure_posts_are_und_and_run_the_classifiers_their_script_fits(text, runs_on_it):
    assert detect(text) == UNDETERMINED
    assert {name for name, spec in SPECS.items() if runs(detect(text), spec.languages, clean_text(text))} == runs_on_it


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="shared corpus not present")
def test_routing_keeps_the_classifiers_of_real_posts_and_no_english_post_gets_stars():
    """Every 40th post of the shared corpus (~3,600): >= 99.5% of English posts keep the English
    classifiers and of Chinese posts keep stars; and of all its English posts none reaches stars
    (one without Han characters cannot: checked on those with any). The corpus's own `lang`
    field is the truth; benchmarks/language_routing.py prints the full figures."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        posts = [json.loads(line) for line in handle]
    sample = posts[::40]
    kept = Counter()
    for post, lang, shares in zip(sample, detect_many([p["text"] for p in sample]),
                                  script_shares([clean_text(p["text"]) for p in sample])):
        classifier = "stars" if post["lang"] == "zh" else "sentiment"
        kept[post["lang"], runs_on(lang, SPECS[classifier].languages, shares)] += 1
    for truth in ("en", "zh"):
        assert kept[truth, True] / (kept[truth, True] + kept[truth, False]) >= 0.995, kept
    with_han = [p["text"] for p in posts if p["lang"] == "en" and regex.search(r"\p{Script=Han}", p["text"])]
    assert len(with_han) > 10  # place names, kanji hashtags: the posts that reached stars as `und`
    reached = [text for text, lang, shares in zip(with_han, detect_many(with_han),
                                                  script_shares([clean_text(t) for t in with_han]))
               if runs_on(lang, SPECS["stars"].languages, shares)]
    assert reached == []


ENGLISH = ["I loved this movie, the ending was brilliant and the actors were great",
           "The government should spend more money on schools and hospitals this year",
           "this phone was useless, waste of money, never buying from them again"]
CHINESE = ["这家店的外卖很好吃，送得也很快，下次还会再来", "酒店房间很干净，服务也很周到，就是价格有点贵",
           "送餐太慢了，等了一个半小时，饭菜都凉了"]


def _label(tmp_path, name, posts, models_file, *extra):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), encoding="utf-8")
    out = tmp_path / name
    result = run(["--input", str(path), "--output", str(out), "--models", models_file, "--device", "cpu", *extra])
    table = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "labels-*.parquet")))])
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["model_texts"] = {  # texts the handler ran each model on: all it got, less the unrouted/empty ones
        name: _counter(result, f"classifier_{name}", "texts") for name in SPECS}
    for name in manifest["checkpoints"]:  # each classifier of the run got every row once, in its one RunInference
        given = _counter(result, f"classifier_{name}", "texts") + _counter(result, f"classifier_{name}", "empty_texts")
        assert given == _counter(result, "classifiers", "num_inferences") == len(posts)
    return {row["id"]: row for row in table.to_pylist()}, manifest


def _counter(result, namespace, name):
    return counter_values(result).get((namespace, name), 0)


def test_rows_outside_a_classifiers_languages_get_nulls_and_no_model_time(tmp_path, tiny_models_file):
    posts = ([{"id": f"en{i}", "text": t} for i, t in enumerate(ENGLISH)]
             + [{"id": f"zh{i}", "text": t} for i, t in enumerate(CHINESE)]
             + [{"id": "given", "text": ENGLISH[0], "lang": "zh-CN"}, {"id": "und", "text": "#tbt @user"},
                {"id": "place", "text": "Dinner date with sis @ Din Tai Fung Bellevue 鼎泰豐"},
                {"id": "mixed", "text": "这个手机太差了 the update broke it"}, {"id": "digits", "text": "12345"},
                {"id": "empty", "text": "https://t.co/x"}])
    routed, manifest = _label(tmp_path, "routed", posts, tiny_models_file, "--lang-field", "lang")
    everything, all_manifest = _label(tmp_path, "all", posts, tiny_models_file, "--all-languages")
    assert {i: r["lang"] for i, r in routed.items()} == {
        **{f"en{i}": "en" for i in range(3)}, **{f"zh{i}": "zh" for i in range(3)}, "given": "zh",
        **dict.fromkeys(("und", "place", "mixed", "digits", "empty"), "und")}
    assert everything["given"]["lang"] == "en"  # without --lang-field the text is detected
    label_columns = {"politics": "politics_economy", "stars": "stars", "sentiment": "sentiment", "emotion": "emotions"}
    for row_id, row in routed.items():
        for name, column in label_columns.items():
            if row["clean_text"] and runs(row["lang"], SPECS[name].languages, row["clean_text"]):
                assert row[column] == everything[row_id][column], (row_id, name)  # routing costs no label
                assert row[column] is not None, (row_id, name)
            else:
                assert row[column] is None, (row_id, name)
    assert routed["place"]["stars"] is None and routed["place"]["sentiment"] is not None  # a Chinese place name
    assert routed["mixed"]["stars"] is not None and routed["mixed"]["sentiment"] is not None
    assert routed["digits"]["sentiment"] is None and everything["digits"]["sentiment"] is not None
    # The manifest's counts against the written Parquet: a classifier's rows with labels, those
    # with a text it was kept from, and the rows without text add up to the rows written.
    for name, column in label_columns.items():
        labeled = sum(row[column] is not None for row in routed.values())
        with_text = sum(bool(row["clean_text"]) for row in routed.values())
        assert manifest["by_classifier"][name] == {"labeled": labeled, "skipped_language": with_text - labeled}
        assert manifest["inferences"][name] == manifest["model_texts"][name] == labeled  # no text failed
        assert labeled + manifest["by_classifier"][name]["skipped_language"] + manifest["empty_text_rows"] == len(posts)
        assert labeled < all_manifest["inferences"][name] == all_manifest["by_classifier"][name]["labeled"] == with_text
    assert manifest["empty_text_rows"] == 1
    assert all_manifest["routing"] == {name: "all languages" for name in SPECS}
    assert manifest["languages"] == dict(sorted(Counter(row["lang"] for row in routed.values()).items()))


def test_languages_override_per_classifier(tmp_path, tiny_checkpoints):
    posts = [{"id": "zh", "text": CHINESE[0]}, {"id": "en", "text": ENGLISH[0]}]
    rows, manifest = _label(tmp_path, "override", posts, _models_file(tmp_path, tiny_checkpoints, "sentiment"),
                            "--only", "sentiment", "--languages", "sentiment=zh")
    assert rows["zh"]["sentiment"] is not None and rows["en"]["sentiment"] is None
    assert manifest["routing"] == {"sentiment": "zh (Han script)"}


def _models_file(tmp_path, checkpoints, name):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({name: checkpoints[name]}))
    return str(path)


def letters_share_one_char_at_a_time(text: str) -> float:
    counts = Counter(script(c) for c in text if c.isalpha())
    return max(counts.values()) / sum(counts.values()) if counts else 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40) | st.text(max_size=40))
def test_the_ascii_shortcut_of_the_script_share_agrees_with_counting_each_letter(text):
    assert main_script_share(text) == letters_share_one_char_at_a_time(text)


# ---- detection for a whole batch at once: the same answers as one post at a time

SENTENCES = ENGLISH + CHINESE + [
    "Saya sangat suka makanan di kedai ini, harganya murah dan sedap", "Das Essen war kalt und der Service langsam",
    "El servicio fue excelente y la comida muy rica", "Это был лучший фильм, который я видел в этом году",
    "今日はとても良い天気ですね、散歩に行きましょう", "الخدمة كانت ممتازة والطعام لذيذ جدا", "오늘 날씨가 정말 좋네요"]
NOISE = st.sampled_from(["@user", "https://t.co/x", "#tbt", "😂", "👍👍", "!!!", "12", "www.x.com/a", "\n"])
POST = st.one_of(
    st.none(), st.just(""), st.text(max_size=60),  # any code points but surrogates
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=30),  # CJK
    st.sampled_from(SENTENCES), st.sampled_from(SENTENCES).map(str.upper),  # py3langid lowercases all-caps text
    st.lists(st.one_of(st.sampled_from(SENTENCES), NOISE), max_size=6).map(" ".join),
    st.builds(lambda part, times: part * times, st.one_of(st.sampled_from(SENTENCES), st.text(max_size=8)),
              st.integers(1, 300)))  # long: up to ~20 KB
# (chunk positions, group bytes): the defaults, and sizes small enough that texts span chunks and groups
SIZES = st.sampled_from([(language._CHUNK_POSITIONS, language._GROUP_BYTES), (7, 50), (1, 1)])


def _sizes(chunk_positions, group_bytes):
    return mock.patch.multiple(language, _CHUNK_POSITIONS=chunk_positions, _GROUP_BYTES=group_bytes)


@settings(max_examples=80, deadline=None)
@given(st.lists(POST, max_size=12), SIZES)
def test_detect_many_is_detect_one_post_at_a_time(texts, sizes):
    with _sizes(*sizes):
        assert detect_many(texts) == [detect(text) for text in texts]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), SIZES)
def test_visited_features_are_py3langids_own_counts_in_its_order(data, sizes):
    """The DFA walked over all byte positions at once visits what py3langid's byte loop visits:
    the same features, counts and first-visit order (the order its float32 product sums in)."""
    from py3langid.langid import visit_counts

    identifier = language._identifier()
    row_base = [row << 8 for row in identifier.tk_row]
    with _sizes(*sizes):
        text, feature, count = language._visited_features(b"".join(data), np.array([len(d) for d in data]))
    for i, item in enumerate(data):
        expected = visit_counts(identifier.tk_nextmove, row_base, identifier.tk_output, item) or {}
        assert list(zip(feature[text == i].tolist(), count[text == i].tolist())) == list(expected.items())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), POST.filter(lambda t: t is not None)), max_size=10),
       st.sampled_from([5, 1 << 20]))
def test_script_shares_of_a_batch_are_each_posts_share(texts, chunk):
    assert main_script_shares(texts, chunk) == [main_script_share(t) for t in texts] == \
           [letters_share_one_char_at_a_time(t) for t in texts]


GIVEN = st.sampled_from([None, "", "en", "EN", "zh_Hant", "pt-BR", 3, "??"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(POST, GIVEN), max_size=10))
def test_post_languages_is_post_language_per_post(posts):
    texts, given_values = [t for t, _ in posts], [g for _, g in posts]
    assert post_languages(texts, given_values) == [post_language(t, g) for t, g in posts]
    assert post_languages(texts) == [post_language(t) for t in texts]


def test_detect_many_takes_lone_surrogates_and_control_characters_as_detect_does():
    texts = ["\ud800abc", "hello \udfff world, this is plain english text", "\x00\x00", "ÉCOLE FERMÉE À PARIS"]
    assert detect_many(texts) == [detect(t) for t in texts]


def test_post_languages_wants_one_given_value_per_text():
    with pytest.raises(ValueError):
        post_languages(["a", "b"], ["en"])


def _corpus_sample(step):
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in itertools.islice(handle, 0, None, step)]


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="shared corpus not present")
def test_detect_many_on_real_posts_is_detect_and_py3langids_classify():
    """Every 50th post of the shared corpus (~2,900), in the pipeline's batches of 1024: the batch
    answers are the one-by-one ones, and the probabilities are py3langid's own (a fresh identifier
    built from its shipped model, restricted to DETECTED) to 1e-9."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    texts = _corpus_sample(50)
    assert sum(detect_many(texts[i:i + 1024]) == [detect(t) for t in texts[i:i + 1024]]
               for i in range(0, len(texts), 1024)) == -(-len(texts) // 1024)
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    reference.set_languages(DETECTED)
    bodies = [language._SET_ASIDE.sub(" ", t) for t in texts]
    codes, probabilities = classify_many(bodies)
    expected = [reference.classify(body) for body in bodies]
    assert codes == [code for code, _ in expected]
    assert max(abs(p - q) for p, (_, q) in zip(probabilities, expected)) <= 1e-9
    assert len(set(codes)) >= 2 and min(probabilities) < 0.5 < max(probabilities)  # not one trivial answer


def test_a_huge_post_in_a_batch_costs_memory_linear_in_it():
    """A ~3 MB post among short ones: the same answers as one by one, and the memory the batch
    takes stays a few copies of that post plus fixed-size chunks (walking the batch padded to its
    longest post, or all its bytes at once, would take tens of times more)."""
    huge = " ".join(SENTENCES[:3] + ["@user https://t.co/x 👍"]) * 15_000
    texts = ENGLISH + [huge] + CHINESE + [None]
    detect_many(texts[:2])  # the model's arrays, loaded once per process, are not the batch's
    tracemalloc.start()
    try:
        langs = detect_many(texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert langs == [detect(t) for t in texts]
    size = len(huge.encode("utf-8"))
    assert size > 2 * language._CHUNK_POSITIONS * 4 and peak < 12 * size + (64 << 20), (size, peak)


def test_a_batch_whose_detection_fails_gets_each_posts_language_alone(monkeypatch):
    """add_languages (the handler's step before routing): a failure of the batch call costs nothing
    but speed; a post whose detection fails on its own is `und` (only the classifiers whose script fits run on it)."""
    texts = ["the vote was counted today and everyone was happy about it", "这家店的外卖很好吃，送得也很快", "poison"]
    rows = [{"text": t, "lang": g} for t, g in zip(texts, [None, None, None])] + [{"text": "whatever", "lang": "MS"}]
    expected = [post_language(row["text"], row["lang"]) for row in rows]
    expected[2] = UNDETERMINED

    def failing_batch(texts, given=None):
        raise RuntimeError("batch detection broke")

    alone = language.post_language

    def failing_one(text, given=None):
        if text == "poison":
            raise RuntimeError("this post breaks detection")
        return alone(text, given)

    monkeypatch.setattr(language, "post_languages", failing_batch)
    monkeypatch.setattr(language, "post_language", failing_one)
    language.add_languages(rows)
    assert [row["lang"] for row in rows] == expected
    assert expected[:2] == ["en", "zh"] and expected[3] == "ms"

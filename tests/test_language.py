"""Language detection and routing: the pure functions (properties), the detector against the shared
corpus's own `lang` field (a reference nobody here wrote), and whole runs where rows outside a
classifier's languages get nulls and no model time while the others keep the labels of a run
that routes nothing (--all-languages)."""
from __future__ import annotations

import glob
import gzip
import itertools
import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.specs import SPECS
from pipelines.label_corpus import run
from transforms.language import UNDETERMINED, detect, normalize, parse_languages, post_language, routing_counts, runs_on

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpora", "social_posts.jsonl.gz")
if not os.path.exists(CORPUS):
    CORPUS = "/work/shared/corpora/social_posts.jsonl.gz"
CODES = st.sampled_from(["en", "zh", "ms", "de", UNDETERMINED])
ROUTES = st.dictionaries(st.sampled_from(list(SPECS)), st.one_of(st.none(), st.frozensets(CODES, min_size=1)))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(CODES, st.integers(0, 1000)), ROUTES)
def test_routing_counts_add_up_and_follow_runs_on(lang_counts, routes):
    counts = routing_counts(lang_counts, routes)
    for name, languages in routes.items():
        assert counts[name]["labeled"] + counts[name]["skipped_language"] == sum(lang_counts.values())
        assert counts[name]["labeled"] >= lang_counts.get(UNDETERMINED, 0)  # unsure: the classifier runs
        if languages is None:
            assert counts[name]["skipped_language"] == 0


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


@pytest.mark.parametrize("text", ["", "   ", "@user https://t.co/x #tbt", "👍👍👍", "12345",
                                  "这个手机太差了 the update broke it"])
def test_unsure_posts_are_und_and_run_every_classifier(text):
    assert detect(text) == UNDETERMINED
    assert all(runs_on(detect(text), spec.languages) for spec in SPECS.values())


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="shared corpus not present")
def test_detection_keeps_the_classifiers_of_real_posts():
    """Every 40th post of the shared corpus (~3,600): >= 99.5% of English posts keep the English
    classifiers and of Chinese posts keep stars (benchmarks/language_routing.py does all of it)."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        posts = [json.loads(line) for line in itertools.islice(handle, 0, None, 40)]
    kept = Counter()
    for post in posts:
        lang = detect(post["text"])
        classifier = "stars" if post["lang"] == "zh" else "sentiment"
        kept[post["lang"], runs_on(lang, SPECS[classifier].languages)] += 1
    for truth in ("en", "zh"):
        assert kept[truth, True] / (kept[truth, True] + kept[truth, False]) >= 0.995, kept


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
    return sum(c.committed for c in result.metrics().query()["counters"]
               if c.key.metric.namespace == namespace and c.key.metric.name == name)


def test_rows_outside_a_classifiers_languages_get_nulls_and_no_model_time(tmp_path, tiny_models_file):
    posts = ([{"id": f"en{i}", "text": t} for i, t in enumerate(ENGLISH)]
             + [{"id": f"zh{i}", "text": t} for i, t in enumerate(CHINESE)]
             + [{"id": "given", "text": ENGLISH[0], "lang": "zh-CN"}, {"id": "und", "text": "#tbt @user"}])
    routed, manifest = _label(tmp_path, "routed", posts, tiny_models_file, "--lang-field", "lang")
    everything, all_manifest = _label(tmp_path, "all", posts, tiny_models_file, "--all-languages")
    assert {i: r["lang"] for i, r in routed.items()} == {
        **{f"en{i}": "en" for i in range(3)}, **{f"zh{i}": "zh" for i in range(3)}, "given": "zh", "und": "und"}
    assert everything["given"]["lang"] == "en"  # without --lang-field the text is detected
    label_columns = {"politics": "politics_economy", "stars": "stars", "sentiment": "sentiment", "emotion": "emotions"}
    for row_id, row in routed.items():
        for name, column in label_columns.items():
            if runs_on(row["lang"], SPECS[name].languages):
                assert row[column] == everything[row_id][column], (row_id, name)  # routing costs no label
                assert row[column] is not None, (row_id, name)
            else:
                assert row[column] is None, (row_id, name)
    # the manifest's counts, recomputed from the written `lang` column, and the model time saved
    langs = Counter(row["lang"] for row in routed.values())
    for name, spec in SPECS.items():
        labeled = sum(n for lang, n in langs.items() if runs_on(lang, spec.languages))
        assert manifest["by_classifier"][name] == {"labeled": labeled, "skipped_language": len(posts) - labeled}
        assert manifest["model_texts"][name] == labeled < all_manifest["model_texts"][name] == len(posts)
    assert all_manifest["routing"] == {name: "all languages" for name in SPECS}
    assert manifest["languages"] == dict(sorted(langs.items()))


def test_languages_override_per_classifier(tmp_path, tiny_checkpoints):
    posts = [{"id": "zh", "text": CHINESE[0]}, {"id": "en", "text": ENGLISH[0]}]
    rows, manifest = _label(tmp_path, "override", posts, _models_file(tmp_path, tiny_checkpoints, "sentiment"),
                            "--only", "sentiment", "--languages", "sentiment=zh")
    assert rows["zh"]["sentiment"] is not None and rows["en"]["sentiment"] is None
    assert manifest["routing"] == {"sentiment": "zh"}


def _models_file(tmp_path, checkpoints, name):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({name: checkpoints[name]}))
    return str(path)


def letters_share_one_char_at_a_time(text: str) -> float:
    from transforms.language import script

    counts = Counter(script(c) for c in text if c.isalpha())
    return max(counts.values()) / sum(counts.values()) if counts else 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40) | st.text(max_size=40))
def test_the_ascii_shortcut_of_the_script_share_agrees_with_counting_each_letter(text):
    from transforms.language import main_script_share

    assert main_script_share(text) == letters_share_one_char_at_a_time(text)

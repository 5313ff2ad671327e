"""transforms.contract: the names shared by the pipeline, the commit, the report and the
benchmarks, and the command line's defaults, which are the configuration's."""
import dataclasses
import fnmatch

from transforms import contract


def test_shard_names_match_the_readers_glob_and_not_the_staged_ones():
    assert contract.shard_name(0, 1) == "labels-00000-of-00001.parquet"
    assert fnmatch.fnmatch(contract.shard_name(3, 12), contract.SHARD_GLOB)
    assert not fnmatch.fnmatch(contract.shard_name(0, 1) + ".staged", contract.SHARD_GLOB)
    assert fnmatch.fnmatch(contract.shard_name(0, 1) + ".staged", contract.shard_glob(".parquet.staged"))


def test_per_classifier_namespaces_and_language_keys_read_back():
    assert contract.classifier_namespace("stars") == "classifier_stars"
    assert contract.namespace_classifier(contract.classifier_namespace("stars")) == "stars"
    assert contract.namespace_classifier(contract.METRICS_NAMESPACE) is None
    assert contract.key_language(contract.language_key("zh")) == "zh"
    assert contract.key_language(contract.inferences_key("zh")) is None
    keys = {f(name) for f in (contract.inferences_key, contract.tokens_key, contract.labeled_key,
                              contract.skipped_language_key, contract.carried_key) for name in ("a", "b")}
    assert len(keys) == 10  # no two counts of a run share a key


def test_the_command_lines_defaults_are_the_configurations(tmp_path):
    from models.classifier import InferenceOptions
    from pipelines.label_corpus import config_from_argv
    from pipelines.labeling import LabelConfig
    from transforms.cleaning import CleaningOptions
    from transforms.records import FieldMap

    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "hello"}\n')
    config = config_from_argv(["--input", str(posts), "--output", str(tmp_path / "out"), "--model", "sentiment=x"])
    assert config.inference == InferenceOptions() and config.cleaning == CleaningOptions()
    assert config.fields == FieldMap()
    defaults = {f.name: f.default for f in dataclasses.fields(LabelConfig) if f.default is not dataclasses.MISSING}
    assert {name: getattr(config, name) for name in defaults if name != "beam_args"} == \
        {name: value for name, value in defaults.items() if name != "beam_args"}

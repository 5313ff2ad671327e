"""Checkpoint resolution: hub ids are pinned to a commit, only safe weight files are fetched,
and nothing in the code opts into remote code."""
from __future__ import annotations

import pathlib
from types import SimpleNamespace

import huggingface_hub
import pytest

from models import checkpoints
from models.checkpoints import CheckpointError, resolve, validate


def test_hub_id_is_pinned_to_the_commit_it_resolves_to(monkeypatch, tiny_checkpoints):
    asked = {}

    def model_info(self, repo_id, revision=None):
        asked["info"] = (repo_id, revision)
        files = ["config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"]
        return SimpleNamespace(sha="0123abcd" * 5, siblings=[SimpleNamespace(rfilename=f) for f in files])

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked["download"] = (repo_id, revision, tuple(allow_patterns))
        return tiny_checkpoints["sentiment"]

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    resolved = resolve("sentiment", "someone/some-model@v1.0")
    assert asked["info"] == ("someone/some-model", "v1.0")
    repo, revision, patterns = asked["download"]
    assert (repo, revision) == ("someone/some-model", "0123abcd" * 5)
    assert "model.safetensors" in patterns and "pytorch_model.bin" not in patterns and "tf_model.h5" not in patterns
    assert resolved.revision == "0123abcd" * 5
    assert validate(resolved).fields[0].name == "sentiment"


def test_a_path_that_is_nothing_is_refused_with_a_hint(tmp_path):
    with pytest.raises(CheckpointError, match=r"'stars'.*--model stars=/path/to/checkpoint"):
        resolve("stars", str(tmp_path / "missing" / "deeper" / "dir"))


def test_local_revision_changes_with_the_weights(tmp_path):
    from models.tiny_checkpoints import build_tiny_checkpoint

    first = resolve("sentiment", str(build_tiny_checkpoint("sentiment", tmp_path / "a", seed=1))).revision
    second = resolve("sentiment", str(build_tiny_checkpoint("sentiment", tmp_path / "b", seed=2))).revision
    again = resolve("sentiment", str(tmp_path / "a" / "sentiment")).revision
    assert first == again != second


def test_no_code_enables_remote_code_or_unsafe_loading():
    root = pathlib.Path(checkpoints.__file__).resolve().parent.parent
    for path in [*root.glob("models/*.py"), *root.glob("pipelines/*.py"), *root.glob("transforms/*.py")]:
        source = path.read_text()
        assert "trust_remote_code=True" not in source, path
        assert "weights_only=False" not in source, path
        assert "eval(" not in source.replace(".eval(", ""), path


def test_remote_prefix_copy_reproduces_the_checkpoint(tmp_path, tiny_checkpoints):
    from models.checkpoints import ResolvedCheckpoint, _copy_remote_prefix, files_digest

    # Beam's FileSystems reads gs:// and s3:// the same way it reads this local prefix
    _copy_remote_prefix(tiny_checkpoints["stars"], tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.partial"))
    assert files_digest(tmp_path / "cache") == files_digest(pathlib.Path(tiny_checkpoints["stars"]))
    copied = ResolvedCheckpoint("stars", "gs://bucket/stars", str(tmp_path / "cache"), "x")
    assert [f.name for f in validate(copied).fields] == ["stars", "stars_score"]


def test_a_worker_in_this_process_takes_the_models_validation_loaded(tmp_path, tiny_models_file, monkeypatch):
    """On the in-process DirectRunner each checkpoint's weights are loaded once (by validation)
    and handed to the worker; nothing stays held after the run."""
    import json

    from models import classifier
    from pipelines.label_corpus import run
    from pipelines.runner import runs_in_this_process

    loads = []
    real = checkpoints.load_weights

    def counted(local_dir, *args, **kwargs):
        loads.append(local_dir)
        return real(local_dir, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "load_weights", counted)
    monkeypatch.setattr(classifier, "load_weights", counted)
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps({"id": str(i), "text": f"post {i} on the vote"}) + "\n"
                                                  for i in range(5)))
    run(["--input", str(tmp_path / "posts.jsonl"), "--output", str(tmp_path / "out"), "--models", tiny_models_file,
         "--device", "cpu", "--all-languages"])
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 4  # once per classifier
    assert checkpoints._VALIDATED == {}
    assert runs_in_this_process([]) and runs_in_this_process(["--direct_running_mode=multi_threading"])
    assert not runs_in_this_process(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert not runs_in_this_process(["--runner=DataflowRunner"])

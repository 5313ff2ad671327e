"""Shared fixtures: tiny random-weight checkpoints for the four classifiers, built offline."""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Property tests draw the same examples on every run by default, so the suite (and the gate that
# lands a change) is reproducible; HYPOTHESIS_PROFILE=explore draws fresh ones each run and keeps
# failing examples in .hypothesis/ (what to run when hunting for new failures).
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, str]:
    """classifier name -> checkpoint directory (models.json sits beside them)."""
    from models.tiny_checkpoints import build_all

    return build_all(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def tiny_models_file(tiny_checkpoints) -> str:
    return os.path.join(os.path.dirname(next(iter(tiny_checkpoints.values()))), "models.json")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one); run with `-m gpu` on the GPU "
                                       "machine (benchmarks/gpu_session.sh)")
    config.addinivalue_line("markers", "airflow: drives the real Airflow of .venv-airflow (built by .ci/run; skipped "
                                       "without it)")

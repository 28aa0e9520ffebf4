import os

import pytest
import torch

# Tests share two cores with everything else: keep torch to one thread.
torch.set_num_threads(1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DISTILL_HOME for the test."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("DISTILL_HOME", str(h))
    return h


@pytest.fixture(autouse=True)
def _no_codecarbon_files(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    yield

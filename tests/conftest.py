
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
def _quiet_measurement(monkeypatch, tmp_path):
    """Run in a temporary folder, and measure runs quickly (no energy, short timings) unless a
    test asks for full measurement itself (tests/test_measure.py, the CLI end-to-end test)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILL_MEASURE", "quick")
    yield

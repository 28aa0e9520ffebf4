"""A knob's range is written once, in its Param: narrow the temperature's range there, and the
New experiment page, the CLI and the store's validation all refuse what it no longer allows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.cli import main as cli_main
from distill_core.errors import ConfigError
from distill_core.jobs import Store, queue
from distill_core.methods import METHODS, TEMPERATURE

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "digits", "teacher": {"arch": "mlp", "hidden": [8]}, "students": [{"arch": "mlp", "hidden": [4]}],
        "methods": ["kd"], "train": {"epochs": 1}}


@pytest.fixture
def narrow_temperature():
    """TEMPERATURE's upper bound lowered from 100 to 20, in its Param alone, for one test."""
    old = TEMPERATURE.max
    object.__setattr__(TEMPERATURE, "max", 20.0)  # a Param is frozen: this is the one place a test changes it
    yield 20.0
    object.__setattr__(TEMPERATURE, "max", old)


def test_every_method_with_a_temperature_shares_the_one_param():
    shared = [m for m in METHODS if any(p.name == "temperature" for p in m.params)]
    assert shared and all(TEMPERATURE in m.params for m in shared)


def test_the_store_follows_the_param(home, narrow_temperature):
    store = Store(home)
    queue.submit(store, {**TINY, "temperatures": [20.0]})  # the new bound itself is allowed
    with pytest.raises(ConfigError, match=r"temperatures: 50.0 is outside \[0.1, 20.0\]"):
        queue.submit(store, {**TINY, "temperatures": [50.0]})


def test_the_cli_follows_the_param(home, narrow_temperature, capsys):
    assert cli_main(["--home", str(home), "run", "--dataset", "digits", "--temperature", "50", "--epochs", "1"]) == 2
    assert "temperatures: 50.0 is outside [0.1, 20.0]" in capsys.readouterr().err


def test_the_page_follows_the_param(home, narrow_temperature):
    (home / "settings.json").write_text(json.dumps({"autostart": False}))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/new_experiment.py").run()
    at.text_input(key="ne_temps").set_value("50").run()
    assert not at.exception
    assert "temperatures: 50.0 is outside [0.1, 20.0]" in [str(e.value) for e in at.error]
    assert not [b for b in at.button if b.key == "ne_launch"]  # nothing can be launched
    at.text_input(key="ne_temps").set_value("20").run()
    assert [b for b in at.button if b.key == "ne_launch"]

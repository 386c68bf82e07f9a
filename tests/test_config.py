"""Config loading: YAML + overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scarlet_ray.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_without_file():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.attribution.n_masks == 64 and cfg.attribution.keep_prob == 0.5
    assert cfg.labels.k == 3 and cfg.labels.random_state == 42
    assert cfg.training.lr == 6e-5


def test_quickstart_loads_with_overrides():
    cfg = load_config(ROOT / "jobs" / "quickstart.yaml",
                      ["attribution.n_masks=32", "models.dtype=float32",
                       "context.properties=[P31, P279]", "synthesis.check=false"])
    assert cfg.attribution.n_masks == 32
    assert cfg.models.dtype == "float32"
    assert cfg.context.properties == ["P31", "P279"]
    assert cfg.synthesis.check is False
    assert cfg.name == "quickstart"


@pytest.mark.parametrize("override, key", [
    ("attribution.n_maks=3", "attribution.n_maks"),
    ("attribution.n_masks=many", "attribution.n_masks"),
    ("attribution.keep_prob=1.5", "attribution.keep_prob"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("models.dtype=float8", "models.dtype"),
])
def test_override_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert key in str(exc.value)


def test_file_errors_name_file_and_key(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("attribution:\n  n_masks: 64\n  surrogat: ridge\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(f) in str(exc.value) and "attribution.surrogat" in str(exc.value)
    assert "unknown key" in str(exc.value)


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["attribution.n_masks"])
    with pytest.raises(ConfigError, match="seed: not a section"):
        load_config(ROOT / "jobs" / "quickstart.yaml", ["seed.x=1"])
    with pytest.raises(ConfigError, match="seed: Input should be a valid integer"):
        load_config(None, ["seed.x=1"])

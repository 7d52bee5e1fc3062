"""Settings: defaults, YAML file, environment, and one clear error for each bad value."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from generator import config as config_module
from generator.config import Settings, load_settings
from generator.errors import ConfigError


def test_defaults_need_no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GAPFILL_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.redis_url is None
    assert settings.data_dir == tmp_path / "gapfill"
    assert settings.key_prefix == "gapfill"
    assert settings.appendfsync == "always"


def test_redis_url_is_read_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/0")
    assert load_settings().redis_url == "redis://example:6379/0"
    monkeypatch.setenv("GAPFILL_REDIS_URL", "redis://other:6380/1")
    assert load_settings().redis_url == "redis://other:6380/1"


def test_yaml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gapfill.yaml"
    config.write_text("key_prefix: campaign-7\nlease_seconds: 60\n")
    settings = load_settings(config)
    assert (settings.key_prefix, settings.lease_seconds) == ("campaign-7", 60)
    monkeypatch.setenv("GAPFILL_LEASE_SECONDS", "90")
    assert load_settings(config).lease_seconds == 90
    monkeypatch.setenv("GAPFILL_CONFIG", str(config))
    assert load_settings().key_prefix == "campaign-7"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("key_prefix: [unclosed\n", r"gapfill.yaml: not valid YAML"),
        ("- a\n- b\n", r"gapfill.yaml: the top level must be a mapping"),
        ("colour: blue\n", r"gapfill.yaml:1: colour: unknown key; README.md's 'Configuration'"),
        (
            "appendfsync: always\nlease_second: 60\n",
            r"gapfill.yaml:2: lease_second: unknown key; did you mean 'lease_seconds'\?",
        ),
        ("lease_seconds: 1\n", r"gapfill.yaml:1: lease_seconds: Input should be greater"),
        ("key_prefix: 'a:b'\n", r"gapfill.yaml:1: key_prefix: String should match pattern"),
        ("redis_url: http://x\n", r"gapfill.yaml: redis_url .*: must start with redis://"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "gapfill.yaml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_a_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPFILL_APPENDFSYNC", "sometimes")
    with pytest.raises(ConfigError, match="appendfsync"):
        load_settings()


def test_a_config_file_is_given_to_the_settings_not_put_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    class Recording(config_module.YamlConfigSettingsSource):
        def __init__(self, *args: object, **kwargs: object) -> None:
            seen.append(os.environ.get("GAPFILL_CONFIG"))
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(config_module, "YamlConfigSettingsSource", Recording)
    config = tmp_path / "gapfill.yaml"
    config.write_text("key_prefix: explicit\n")
    assert load_settings(config).key_prefix == "explicit"
    assert seen == [None], "the environment was changed to pass the file"
    other = tmp_path / "other.yaml"
    other.write_text("key_prefix: from-env\n")
    monkeypatch.setenv("GAPFILL_CONFIG", str(other))
    explicit = load_settings(config)
    assert explicit.key_prefix == "explicit"
    # A plain Settings that travels (RQ, spawned processes), and the file does not stick.
    assert type(explicit) is Settings and pickle.loads(pickle.dumps(explicit)) == explicit
    assert load_settings().key_prefix == "from-env"
    assert os.environ["GAPFILL_CONFIG"] == str(other)

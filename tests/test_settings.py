"""Settings: precedence, parsing, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SETTINGS, ConfigError, Settings, load_settings, parse_size


def test_defaults_match_the_design_table() -> None:
    s = load_settings(environ={}, dotenv=None)
    assert (s.host, s.port, s.data_dir) == ("0.0.0.0", 8080, "./data")
    assert (s.nats_host, s.nats_port) == ("127.0.0.1", 4222)
    assert (s.nats_max_memory, s.nats_max_file_store) == ("1GiB", "2GiB")
    assert (s.admin_email, s.log_level, s.log_format) == ("admin@localhost", "INFO", "console")
    assert s.embedded_nats


def test_every_spec_matches_a_struct_field_with_the_same_default() -> None:
    fields = set(Settings.__struct_fields__)
    assert {spec.field for spec in SETTINGS} == fields
    defaults = Settings()
    for spec in SETTINGS:
        assert getattr(defaults, spec.field) == spec.default, spec.env


def test_flags_beat_env_beat_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('PORT=7000\nHOST="10.0.0.1"\n# comment\nexport LOG_LEVEL=DEBUG\n')
    s = load_settings(environ={"PORT": "7100"}, dotenv=dotenv)
    assert (s.port, s.host, s.log_level) == (7100, "10.0.0.1", "DEBUG")
    s = load_settings({"port": 7200}, environ={"PORT": "7100"}, dotenv=dotenv)
    assert s.port == 7200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"NATS_MAX_MEMORY": "lots"}, "NATS_MAX_MEMORY"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"NATS_TOKEN": "a", "NATS_CREDS": "/x"}, "at most one"),
        ({"OVERWATCH_DEMO": "perhaps"}, "OVERWATCH_DEMO"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env, dotenv=None)


def test_sizes() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1048576") == 1 << 20
    with pytest.raises(ValueError):
        parse_size("-1GiB")


def test_secrets_are_masked_in_repr() -> None:
    s = Settings(secret_key="topsecret", admin_password="hunter2")
    assert "topsecret" not in repr(s) and "hunter2" not in repr(s)

"""Configuration: defaults work out of the box; a bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from runtime import logging
from switchboard.config import ConfigError, load_config
from tests.logcapture import captured_logs


def test_the_packaged_defaults_give_one_domain_with_web_chat() -> None:
    config = load_config({})
    assert list(config.domains) == ["default"]
    assert config.domains["default"].webchat.enabled
    assert config.kafka.bootstrap_servers is None
    assert config.database.url is None
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)


def test_environment_variables_override_the_file() -> None:
    config = load_config(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "DATABASE_URL": "postgresql://db/x",
            "SWITCHBOARD_PORT": "9000",
            "SWITCHBOARD_PUBLIC_URL": "https://chat.example.com",
            "SWITCHBOARD_LOG_FORMAT": "json",
        }
    )
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert config.database.url == "postgresql://db/x"
    assert config.http.port == 9000
    assert config.http.public_url == "https://chat.example.com"
    assert config.log_format == "json"


@pytest.mark.parametrize(
    ("toml", "environ", "named"),
    [
        ('[domains.a]\n[kafka]\npartitions = "many"\n', {}, "kafka.partitions"),
        ("[domains.a]\n[kafka]\npartitions = 0\n", {}, "partitions"),
        (
            "[domains.a]\n[kafka]\nbackground_fetch_max_wait_ms = 20000\n",
            {},
            "background_fetch_max_wait_ms",
        ),
        ("[domains.a]\n[http]\nprot = 1\n", {}, "http"),
        ("[domains.a]\n[database]\ndead_connection_seconds = 1\n", {}, "dead_connection_seconds"),
        ("[domains.a]\n", {"SWITCHBOARD_PORT": "eighty"}, "http.port"),
        ("[domains.a]\n", {"SWITCHBOARD_LOG_FORMAT": "xml"}, "log_format"),
        ("[domains.a]\n", {"SWITCHBOARD_LOG_LEVEL": "verbose"}, "log_level"),
        ("[kafka]\n", {}, "domains"),
        ("[domains.a.webchat]\nenabeld = true\n", {}, "domains.a.webchat"),
    ],
)
def test_a_bad_value_stops_with_a_message_naming_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as error:
        load_config(environ, path)
    assert named in str(error.value)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config({"SWITCHBOARD_CONFIG": str(tmp_path / "nope.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("[domains\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, broken)


def test_a_log_level_is_read_in_any_case(tmp_path: Path) -> None:
    """``debug`` as well as ``DEBUG``: the logger factory took only the upper-case names
    (``getLevelName("debug")`` is "Level debug", and start-up died on it)."""
    path = tmp_path / "switchboard.toml"
    path.write_text("[domains.a]\n")
    config = load_config({"SWITCHBOARD_LOG_LEVEL": "debug"}, path)
    with captured_logs([]) as buffer:
        logging.configure("json", config.log_level, stream=buffer)
        structlog.get_logger("switchboard.test").debug("seen_at_debug")
    assert "seen_at_debug" in buffer.getvalue()

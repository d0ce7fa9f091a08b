"""Credentials from the environment, then a secrets file or directory, read again on demand."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from runtime import logging as logs
from runtime.secrets import SECRETS_MAX_BYTES, Secrets, SecretsFileError
from tests.logcapture import captured_logs


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "secrets.toml"
    file.write_text('TOKEN_A = "from-file"\nTOKEN_B = "only-in-file"\n')
    secrets = Secrets({"TOKEN_A": "from-env"}, file)
    assert secrets["TOKEN_A"] == "from-env"
    assert secrets.get("TOKEN_B") == "only-in-file"
    assert secrets.get("TOKEN_C") is None
    assert sorted(secrets) == ["TOKEN_A", "TOKEN_B"]
    assert len(secrets) == 2


def test_a_directory_holds_one_secret_per_file(tmp_path: Path) -> None:
    (tmp_path / "WHATSAPP_ACCESS_TOKEN").write_text("EAAG-token\n")
    (tmp_path / ".2026_12_01").mkdir()  # Kubernetes' versions of a mounted secret
    (tmp_path / "not a name").write_text("ignored")
    secrets = Secrets({}, tmp_path)
    assert dict(secrets) == {"WHATSAPP_ACCESS_TOKEN": "EAAG-token"}


def test_reload_reads_new_values_and_keeps_the_old_ones_when_the_file_breaks(
    tmp_path: Path,
) -> None:
    file = tmp_path / "secrets.toml"
    file.write_text('OLD = "one"\n')
    secrets = Secrets({}, file)
    file.write_text('OLD = "one"\nNEW = "two"\n')
    assert secrets.reload()
    assert secrets["NEW"] == "two"
    file.write_text('NEW = "three\n')  # broken TOML
    with captured_logs([]) as buffer:
        assert not secrets.reload()
    assert secrets["NEW"] == "two"
    assert "three" not in buffer.getvalue()
    assert "secrets_file_unusable" in buffer.getvalue()


@pytest.mark.parametrize(
    "text",
    ['1BAD = "x"\n', "NUMBER = 3\n", 'TABLE = { a = "b" }\n'],
)
def test_entries_are_names_with_string_values(tmp_path: Path, text: str) -> None:
    file = tmp_path / "secrets.toml"
    file.write_text(text)
    with pytest.raises(SecretsFileError, match="NAME = "):
        Secrets({}, file)


def test_a_missing_or_huge_file_is_refused_without_its_content(tmp_path: Path) -> None:
    with pytest.raises(SecretsFileError, match="No such file"):
        Secrets({}, tmp_path / "absent.toml")
    huge = tmp_path / "huge.toml"
    huge.write_text('BIG = "' + "x" * SECRETS_MAX_BYTES + '"\n')
    with pytest.raises(SecretsFileError, match="larger than") as error:
        Secrets({}, huge)
    assert "xxxx" not in str(error.value)


def test_secrets_added_later_are_masked_in_logs() -> None:
    with captured_logs([]) as buffer:
        logs.add_secrets(["s3cr3t-added-later-value"])
        structlog.get_logger("test").warning("leak", value="s3cr3t-added-later-value")
    assert "s3cr3t-added-later-value" not in buffer.getvalue()
    assert "leak" in buffer.getvalue()

"""Where credentials come from: the process environment, then an optional secrets file.

The configuration never holds a credential: it names the variable that does
(``access_token_env = "WHATSAPP_ACCESS_TOKEN_ACME"``). ``Secrets`` is the mapping every part
of the service looks those names up in. The environment wins; a name it lacks is looked
up in the secrets file (``secrets_file``, env ``SWITCHBOARD_SECRETS_FILE``), which is read
again whenever a new runtime configuration version is applied, so that an endpoint added
through the API with a credential of its own needs no restart: put the credential in the
file first, then add the endpoint.

The file is either a TOML table of strings (``WHATSAPP_ACCESS_TOKEN_ACME = "EAAG…"``) or a
directory with one file per secret, named by it (a Kubernetes secret mounted as a volume),
whose content less its final newline is the value. A file that cannot be read keeps the
values read before, and the reason is logged without any value.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SECRETS_MAX_BYTES = 1024 * 1024
"""Largest secrets file (or directory entry) read."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class SecretsFileError(Exception):
    """The secrets file cannot be used: the message names the file and why, never a value."""


class Secrets(Mapping[str, str]):
    """The environment, then the secrets file."""

    def __init__(self, environ: Mapping[str, str], path: str | Path | None = None) -> None:
        self._environ = dict(environ)
        self._path = None if path is None else Path(path)
        self._file: dict[str, str] = {}
        if self._path is not None:
            self._file = read_secrets(self._path)

    @property
    def path(self) -> Path | None:
        return self._path

    def reload(self) -> bool:
        """Read the file again; False (the values before kept) when it cannot be used."""
        if self._path is None:
            return True
        try:
            self._file = read_secrets(self._path)
        except SecretsFileError as error:
            log.warning("secrets_file_unusable", reason=str(error))
            return False
        return True

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(name)
        if value is not None:
            return value
        return self._file[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._environ
        yield from (name for name in self._file if name not in self._environ)

    def __len__(self) -> int:
        return len(self._environ.keys() | self._file.keys())


def read_secrets(path: Path) -> dict[str, str]:
    """The secrets of a TOML file or a directory (see the module docstring)."""
    try:
        if path.is_dir():
            return _read_directory(path)
        data = _read(path)
    except OSError as error:
        raise SecretsFileError(f"{path}: {error.strerror}") from None
    try:
        table = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise SecretsFileError(f"{path}: not a TOML table of strings") from None
    found: dict[str, str] = {}
    for name, value in table.items():
        if not _NAME.fullmatch(name) or not isinstance(value, str):
            raise SecretsFileError(
                f'{path}: entries are NAME = "value" (letters, digits, _; a string)'
            )
        found[name] = value
    return found


def _read_directory(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(path.iterdir()):
        # Kubernetes keeps the versions of a mounted secret in dot-directories.
        if entry.name.startswith(".") or not _NAME.fullmatch(entry.name) or not entry.is_file():
            continue
        try:
            found[entry.name] = _read(entry).decode().removesuffix("\n")
        except UnicodeDecodeError:
            raise SecretsFileError(f"{entry}: not UTF-8 text") from None
    return found


def _read(path: Path) -> bytes:
    with path.open("rb") as file:
        data = file.read(SECRETS_MAX_BYTES + 1)
    if len(data) > SECRETS_MAX_BYTES:
        raise SecretsFileError(f"{path}: larger than {SECRETS_MAX_BYTES} bytes")
    return data

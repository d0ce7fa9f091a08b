"""``switchboard config apply FILE`` and ``switchboard config export``: the runtime
configuration kept in a repository and applied through the configuration API (GitOps).

``apply`` reads the ``domains`` and ``channels`` sections of a TOML or JSON file (the
service's own configuration file will do: its other sections belong to the deployment and
are named as ignored), checks them as the service would, prints the diff against the
running version, and unless ``--dry-run`` stores it as a new version with ``If-Match``:
applying the same file twice changes nothing the second time. ``export`` prints the
running version, to start such a file from what the API changed.

A client of a running service: ``--url``, else ``SWITCHBOARD_URL``, else the configuration's
own ``http.host`` and ``http.port`` (the service on this machine); and a platform admin
token in the variable named by ``--token-env`` (default ``SWITCHBOARD_ADMIN_TOKEN``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from switchboard.config import ControlDocument
from switchboard.control.document import Change, without_defaults

RUNTIME_SECTIONS = ("domains", "channels")


class CommandError(Exception):
    """What the command prints before exiting with status 1."""


def add_config_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser(
        "config", help="apply or export the runtime configuration (domains, channels)"
    )
    actions = config.add_subparsers(dest="config_command", required=True)
    apply = actions.add_parser("apply", help="make FILE's domains and channels the running ones")
    apply.add_argument("file", type=Path, help="a TOML or JSON file")
    apply.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    export = actions.add_parser("export", help="print the running configuration")
    export.add_argument("--format", choices=("toml", "json"), default="toml")
    for action in (apply, export):
        action.add_argument(
            "--url", help="the service (default: SWITCHBOARD_URL, else http.host and http.port)"
        )
        action.add_argument(
            "--token-env",
            default="SWITCHBOARD_ADMIN_TOKEN",
            help="variable holding a platform admin token (default: %(default)s)",
        )


def config_command(args: argparse.Namespace, environ: Mapping[str, str], local_url: str) -> int:
    """Run ``switchboard config``; ``local_url``: the service the configuration describes."""
    base = (args.url or environ.get("SWITCHBOARD_URL") or local_url).rstrip("/")
    try:
        if args.config_command == "apply":
            return asyncio.run(_apply(args, environ, base))
        return asyncio.run(_export(args, environ, base))
    except CommandError as error:
        print(f"switchboard config: {error}", file=sys.stderr)
        return 1


def read_document(path: Path) -> tuple[ControlDocument, list[str]]:
    """The file's runtime sections as a document, and the other sections it ignores."""
    try:
        text = path.read_text()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None
    try:
        raw: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise CommandError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {error}"
        ) from None
    if not isinstance(raw, dict):
        raise CommandError(f"{path} must hold a table")
    ignored = sorted(key for key in raw if key not in RUNTIME_SECTIONS)
    try:
        document = msgspec.convert(
            {key: raw[key] for key in RUNTIME_SECTIONS if key in raw}, ControlDocument
        )
    except msgspec.ValidationError as error:
        raise CommandError(f"{path}: {error}") from None
    return document, ignored


def _headers(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    token = environ.get(args.token_env, "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, Mapping[str, str]]:
    try:
        async with session.request(method, url, **kwargs) as response:
            body = await response.read()
            status, headers = response.status, response.headers
    except aiohttp.ClientError as error:
        raise CommandError(f"cannot reach {url}: {error}") from None
    decoded: Any = json.loads(body) if body else None
    if status >= 400:
        reason = (
            decoded.get("error")
            if isinstance(decoded, dict)
            else body[:200].decode(errors="replace")
        )
        raise CommandError(f"{method} {url} answered {status}: {reason}")
    return status, decoded, headers


def format_change(change: Change) -> str:
    def shown(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    if change.op == "add":
        return f"+ {change.path} = {shown(change.new)}"
    if change.op == "remove":
        return f"- {change.path} (was {shown(change.old)})"
    return f"~ {change.path}: {shown(change.old)} -> {shown(change.new)}"


async def _apply(args: argparse.Namespace, environ: Mapping[str, str], base: str) -> int:
    document, ignored = read_document(args.file)
    if ignored:
        print(f"ignored (not runtime configuration): {', '.join(ignored)}", file=sys.stderr)
    headers = _headers(args, environ)
    body = msgspec.json.encode(document)
    async with aiohttp.ClientSession(headers=headers) as session:
        _, _, read_headers = await _request(session, "GET", f"{base}/v1/config")
        tag = read_headers.get("ETag", "")
        _, preview, _ = await _request(session, "PUT", f"{base}/v1/config?preview=true", data=body)
        changes = msgspec.convert(preview["changes"], list[Change])
        for change in changes:
            print(format_change(change))
        if not changes:
            print(f"no changes: version {preview['version']} already holds this configuration")
            return 0
        if args.dry_run:
            print(f"{len(changes)} change(s) not applied (--dry-run)")
            return 0
        _, applied, _ = await _request(
            session, "PUT", f"{base}/v1/config", data=body, headers={"If-Match": tag}
        )
    print(f"applied as version {applied['version']} ({len(changes)} change(s))")
    if not applied.get("published", True):
        print("the broker did not take it yet: processes get it when it does", file=sys.stderr)
    return 0


async def _export(args: argparse.Namespace, environ: Mapping[str, str], base: str) -> int:
    headers = _headers(args, environ)
    async with aiohttp.ClientSession(headers=headers) as session:
        _, document, response_headers = await _request(session, "GET", f"{base}/v1/config")
    version = response_headers.get("Config-Version", "?")
    if args.format == "json":
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    try:
        tree = without_defaults(msgspec.convert(document, ControlDocument))
    except msgspec.ValidationError as error:
        raise CommandError(
            f"version {version} cannot be read by this release: {error} (--format json"
            " prints it as it is)"
        ) from None
    nulls = list(_null_paths(tree, ""))
    if nulls:
        raise CommandError(
            f"TOML cannot hold the null of {', '.join(nulls[:5])}: use --format json"
        )
    sys.stdout.write(f"# Switchboard runtime configuration, version {version}\n")
    sys.stdout.write(msgspec.toml.encode(tree).decode())
    return 0


def _null_paths(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _null_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _null_paths(item, f"{path}[{index}]")
    elif value is None:
        yield path

"""The configuration API: domains, queues and channel endpoints changed while the service runs.

Every resource is a part of the runtime configuration document (``ControlDocument``):

- ``/v1/config``: the whole document (platform admins), its versions, restores;
- ``/v1/domains/{domain}/config``: a domain's routing and web chat (its admins; creating
  or deleting a domain is for platform admins);
- ``/v1/domains/{domain}/queues/{queue}``: one queue of the domain's routing;
- ``/v1/domains/{domain}/channels[/{kind}/{key}]``: the provider endpoints feeding the domain
  (Twilio numbers, WhatsApp numbers, pages, Instagram accounts, Telegram bots, addresses).
  Credentials are never in the document: endpoints name the variable holding them.

Reads answer an ``ETag``; a change must send it back in ``If-Match`` (428 without it, 412
when someone changed the resource since), except the creation of what does not exist.
A change is validated as a whole document (400 naming the field), stored as a new version
with its author and diff, audited, applied by this process at once, and published to every
other process (``live``). A change that changes nothing makes no version.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from aiohttp import web

from adapters.config import ChannelsConfig
from router.api.auth import Principal, forbidden
from router.api.openapi import EXTRA_OPERATIONS
from router.api.planning_jobs import PLANNING_JOBS, Report
from router.api.routes import API
from router.engine import BusinessCalendar, DomainPolicy, QueuePolicy
from router.shell.replay import Kpis, Recorded, load_recording, simulate, sla_targets
from runtime.appkeys import CONFIG, DB_POOL
from runtime.audit import record_action
from runtime.callbacks import AllowedAddresses
from runtime.db import DATABASE_ERRORS
from runtime.http_errors import ERROR_LOG_LIMIT, json_error, read_limited, route_of
from runtime.kafka import BrokerUnavailable
from runtime.timeouts import given_up_after
from schemas import MessageReceived
from schemas.limits import DOMAIN_MAX, QUEUE_MAX, decode_json_text
from switchboard.config import ControlDocument, DomainConfig, check_domain_id
from switchboard.control import store
from switchboard.control.checks import check_domain_variables, checked
from switchboard.control.document import (
    DOCUMENT_MAX_BYTES,
    ENDPOINT_KINDS,
    Change,
    EndpointKind,
    diff,
    etag,
    iter_endpoints,
    to_builtins,
)
from switchboard.control.live import CONFIG_TOPIC, LIVE_CONFIG
from switchboard.control.models import (
    VERSION_MAX,
    ConfigChanged,
    DryRunIn,
    DryRunView,
    EndpointSettings,
    EndpointsView,
    EndpointView,
    KpisView,
    VersionsPage,
)
from switchboard.control.operations import DOMAIN_PATH, OPERATIONS, PAGE_MAX

log = structlog.get_logger(__name__)

T = TypeVar("T")

"""What neither PostgreSQL's text nor its ``jsonb`` holds."""


# -- plumbing ---------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handler(function: Handler, *, bounded: bool = True) -> Handler:
    """Refusals and database failures as their status, never a bare 500; a request that
    takes longer than ``api.request_timeout`` answers 503, as the API's other requests do
    (``router.api.routes.guarded``), unless not ``bounded`` (a dry run bounds its reads)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            if not bounded:
                return await function(request)
            return await given_up_after(function(request), _request_timeout(request))
        except _Refused as refused:
            return json_error(refused.status, refused.reason)
        except store.Unreadable as unreadable:
            return json_error(409, str(unreadable))
        except DATABASE_ERRORS as error:
            # Rate limited as the API's other lines are: clients set how often this happens.
            request.app[ERROR_LOG_LIMIT].write(
                log.warning,
                "config_database_failed",
                ("config_database_failed", route_of(request)),
                error=type(error).__name__,
                route=route_of(request),
            )
            return json_error(503, "database unavailable, retry later")

    return handle


def _request_timeout(request: web.Request) -> float:
    return request.app[API].config.request_timeout


def _json(value: Any, *, tag: str | None = None, status: int = 200) -> web.Response:
    response = web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )
    if tag is not None:
        response.headers["ETag"] = tag
    return response


async def _body(request: web.Request, type_: type[T], limit: int) -> T:
    body = await read_limited(request, limit)
    if body is None:
        raise _Refused(413, f"body larger than {limit} bytes")
    try:
        return decode_json_text(lambda data: msgspec.json.decode(data, type=type_), body)
    except msgspec.ValidationError as error:
        raise _Refused(400, f"invalid body: {error}") from None
    except msgspec.DecodeError:
        raise _Refused(400, "body is not valid JSON") from None
    except RecursionError:
        raise _Refused(400, "body is nested too deeply") from None


def _api_limit(request: web.Request) -> int:
    return request.app[API].config.max_body_bytes


async def _platform(request: web.Request) -> Principal:
    return await request.app[API].auth.platform_principal(request, request.app[DB_POOL])


async def _admin(request: web.Request) -> tuple[str, Principal]:
    domain = request.match_info["domain"]
    try:
        # No domain can be configured under another name, and the name goes into queries,
        # where a NUL (PostgreSQL's text cannot hold one) would be a database error.
        check_domain_id(domain)
    except ValueError:
        raise _Refused(
            400, f"domain ids are 1 to {DOMAIN_MAX} letters, digits, '-' and '_'"
        ) from None
    principal = await request.app[API].auth.principal(request, request.app[DB_POOL], domain)
    if not principal.is_admin:
        raise forbidden("needs an admin token")
    return domain, principal


def _current(request: web.Request) -> tuple[int, ControlDocument]:
    live = request.app[LIVE_CONFIG]
    return live.version, live.document


def _read(request: web.Request, value: Any, what: str) -> web.Response:
    if value is None:
        raise _Refused(404, f"unknown {what}")
    version, _ = _current(request)
    response = _json(value, tag=etag(value))
    response.headers["Config-Version"] = str(version)
    return response


def _check_precondition(request: web.Request, current: Any, exists: bool) -> None:
    """``If-Match`` against the resource as it is now (under the writers' lock)."""
    header = request.headers.get("If-Match")
    if header is None:
        if exists:
            raise _Refused(428, "send If-Match with the ETag of the version you changed")
        return
    tags = {tag.strip() for tag in header.split(",")}
    if "*" in tags and len(tags) > 1:
        raise _Refused(400, "If-Match is * alone, or a list of ETags")  # RFC 9110 13.1.1
    if "*" in tags:
        if not exists:
            raise _Refused(412, "If-Match: * but the resource does not exist")
        return
    if not exists or etag(current) not in tags:
        raise _Refused(412, "the resource changed since you read it: read it again (ETag)")


async def _change(
    request: web.Request,
    principal: Principal,
    *,
    resource: Callable[[ControlDocument], Any],
    edit: Callable[[ControlDocument], ControlDocument],
    action: str,
    domain: str | None,
    target: str,
    reason: str = "api",
    conditional: bool = True,
) -> web.Response:
    """Store ``edit`` of the current document as a new version (see the module docstring)."""

    def guarded(document: ControlDocument) -> ControlDocument:
        if conditional:
            current = resource(document)
            _check_precondition(request, current, current is not None)
        allowed = AllowedAddresses(request.app[CONFIG].callbacks.allowed_networks)
        try:
            changed = checked(document, edit(document), allowed)
            if domain is not None and not principal.is_platform:
                check_domain_variables(document, changed, domain, request.app[CONFIG])
        except ValueError as error:  # a struct's own check on replace, or ``checked``'s
            raise _Refused(400, f"invalid configuration: {error}") from None
        return changed

    async def audit(conn: asyncpg.Connection, version: int, changes: list[Change]) -> None:
        await record_action(
            conn,
            actor=principal.actor,
            action=action,
            domain=domain,
            target=target,
            detail={"version": version, "changes": [c.path for c in changes][:100]},
        )

    async with request.app[DB_POOL].acquire() as conn:
        _, after, changes = await store.change(
            conn, guarded, author=principal.actor, reason=reason, on_insert=audit
        )
    published = True
    if changes:
        published = await _publish(request, after)
    response = _json(ConfigChanged(version=after.version, changes=changes, published=published))
    value = resource(after.document)
    if value is not None:
        response.headers["ETag"] = etag(value)
    response.headers["Config-Version"] = str(after.version)
    return response


async def _publish(request: web.Request, version: store.Version) -> bool:
    request.app[LIVE_CONFIG].apply(version.version, version.document)
    try:
        await request.app[CONFIG_TOPIC].publish(version.version, version.document)
    except BrokerUnavailable:
        log.warning("config_publish_failed", version=version.version)
        request.app[CONFIG_TOPIC].retry_later(request.app[LIVE_CONFIG])
        return False
    return True


# -- the whole document (platform) ---------------------------------------------------------


@_handler
async def get_config(request: web.Request) -> web.StreamResponse:
    await _platform(request)
    _, document = _current(request)
    return _read(request, document, "configuration")


@_handler
async def put_config(request: web.Request) -> web.StreamResponse:
    principal = await _platform(request)
    body = await _body(request, ControlDocument, DOCUMENT_MAX_BYTES)
    if request.query.get("preview") in ("1", "true"):
        _, document = _current(request)
        return _json(ConfigChanged(version=_current(request)[0], changes=diff(document, body)))
    return await _change(
        request,
        principal,
        resource=lambda document: document,
        edit=lambda document: body,
        action="config.replace",
        domain=None,
        target="config",
    )


def _int_param(
    request: web.Request, name: str, default: int | None, high: int, *, in_path: bool = False
) -> int | None:
    """A positive integer of the query (of the path with ``in_path``: a query of the same
    name does not override it), written in ASCII digits ("²" is a digit to ``isdigit``)."""
    raw = request.match_info.get(name) if in_path else request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or not 1 <= int(raw) <= high:
        raise _Refused(400, f"{name} must be an integer from 1 to {high}")
    return int(raw)


async def _versions(request: web.Request, domain: str | None) -> web.Response:
    before = _int_param(request, "before", None, 2**62)
    limit = _int_param(request, "limit", 50, PAGE_MAX) or 50
    async with request.app[DB_POOL].acquire() as conn:
        versions = await store.list_versions(conn, domain=domain, before=before, limit=limit)
    next_before = versions[-1].version if len(versions) == limit else None
    return _json(VersionsPage(versions=versions, next_before=next_before))


@_handler
async def list_config_versions(request: web.Request) -> web.StreamResponse:
    await _platform(request)
    return await _versions(request, None)


@_handler
async def get_config_version(request: web.Request) -> web.StreamResponse:
    await _platform(request)
    number = _int_param(request, "version", None, VERSION_MAX, in_path=True)
    assert number is not None
    async with request.app[DB_POOL].acquire() as conn:
        detail = await store.get_version(conn, number)
    if detail is None:
        raise _Refused(404, f"unknown version {number}")
    return _json(detail)


@_handler
async def restore_config_version(request: web.Request) -> web.StreamResponse:
    """A new version holding version N's document: a rollback that keeps the history."""
    principal = await _platform(request)
    number = _int_param(request, "version", None, VERSION_MAX, in_path=True)
    assert number is not None
    async with request.app[DB_POOL].acquire() as conn:
        detail = await store.get_version(conn, number)
    if detail is None:
        raise _Refused(404, f"unknown version {number}")
    return await _change(
        request,
        principal,
        resource=lambda document: document,
        edit=lambda document: detail.document,
        action="config.restore",
        domain=None,
        target=f"version {number}",
        reason=f"restore of {number}",
    )


# -- a domain ----------------------------------------------------------------------------


def _domain_of(domain: str) -> Callable[[ControlDocument], DomainConfig | None]:
    return lambda document: document.domains.get(domain)


def _with_domain(
    document: ControlDocument, domain: str, value: DomainConfig | None
) -> ControlDocument:
    domains = dict(document.domains)
    if value is None:
        domains.pop(domain, None)
    else:
        domains[domain] = value
    return msgspec.structs.replace(document, domains=domains)


@_handler
async def get_domain_config(request: web.Request) -> web.StreamResponse:
    domain, _ = await _admin(request)
    _, document = _current(request)
    return _read(request, document.domains.get(domain), f"domain {domain!r}")


@_handler
async def put_domain_config(request: web.Request) -> web.StreamResponse:
    domain, principal = await _admin(request)
    body = await _body(request, DomainConfig, _api_limit(request))
    _, document = _current(request)
    if domain not in document.domains and not principal.is_platform:
        raise forbidden("only a platform admin creates domains")
    return await _change(
        request,
        principal,
        resource=_domain_of(domain),
        edit=lambda document: _with_domain(document, domain, body),
        action="config.domain.put",
        domain=domain,
        target=f"domain {domain}",
    )


@_handler
async def delete_domain_config(request: web.Request) -> web.StreamResponse:
    domain, principal = await _admin(request)
    if not principal.is_platform:
        raise forbidden("only a platform admin deletes domains")
    _, document = _current(request)
    if domain not in document.domains:
        raise _Refused(404, f"unknown domain {domain!r}")
    feeding = [
        f"{e.kind.name}/{e.key}" for e in iter_endpoints(document.channels) if e.domain == domain
    ]
    if feeding:
        raise _Refused(409, f"endpoints still feed domain {domain!r}: {', '.join(feeding[:20])}")
    return await _change(
        request,
        principal,
        resource=_domain_of(domain),
        edit=lambda document: _with_domain(document, domain, None),
        action="config.domain.delete",
        domain=domain,
        target=f"domain {domain}",
    )


@_handler
async def list_domain_versions(request: web.Request) -> web.StreamResponse:
    domain, _ = await _admin(request)
    return await _versions(request, domain)


# -- dry run ---------------------------------------------------------------------------------

DRY_RUN_MAX_SECONDS = 31 * 86400
"""Longest window a dry run replays."""
DRY_RUN_DEFAULT_SECONDS = 7 * 86400
"""The window of a dry run that names no start: the last week."""
DRY_RUN_MAX_INPUTS = 200_000
"""Most recorded inputs (messages and agent events) a dry run replays: it runs in the
router's process, so a wider window is refused rather than let it crowd out routing."""


def _kpis(kpis: Kpis) -> KpisView:
    return KpisView(
        assignments=kpis.assignments,
        preferred_hit_ratio=kpis.hit_ratio,
        wait_p50_seconds=kpis.wait(0.5),
        wait_p95_seconds=kpis.wait(0.95),
        sla_breaches=kpis.sla_breaches,
        fallbacks=kpis.fallbacks,
        overflowed=kpis.overflowed,
        occupancy=kpis.occupancy,
    )


async def _dry_run(request: web.Request) -> web.StreamResponse:
    """Replay recorded traffic under the current and a candidate routing; change nothing.
    Its reads (the token's, the recording's) are each bounded by ``api.request_timeout``,
    the replay is not: a long one may run in the background instead."""
    domain, principal = await given_up_after(_admin(request), _request_timeout(request))
    body = await _body(request, DryRunIn, _api_limit(request))
    _, document = _current(request)
    current = document.domains.get(domain)
    if current is None:
        raise _Refused(404, f"unknown domain {domain!r}")
    if (body.routing is None) == (body.version is None):
        raise _Refused(400, "invalid body: give exactly one of routing and version")
    end = time.time() if body.end is None else body.end
    start = end - DRY_RUN_DEFAULT_SECONDS if body.start is None else body.start
    if not 0 <= start < end or end - start > DRY_RUN_MAX_SECONDS:
        raise _Refused(400, f"from must be before to, at most {DRY_RUN_MAX_SECONDS} s apart")
    candidate = body.routing

    async def read() -> list[Recorded]:
        nonlocal candidate
        async with request.app[DB_POOL].acquire() as conn:
            if body.version is not None:
                detail = await store.get_version(conn, body.version)
                if detail is None or domain not in detail.document.domains:
                    raise _Refused(404, f"version {body.version} has no domain {domain!r}")
                candidate = detail.document.domains[domain].routing
            return await load_recording(
                conn,
                domain,
                datetime.fromtimestamp(start, UTC),
                datetime.fromtimestamp(end, UTC),
                limit=DRY_RUN_MAX_INPUTS + 1,
            )

    recording = await given_up_after(read(), _request_timeout(request))
    if len(recording) > DRY_RUN_MAX_INPUTS:
        raise _Refused(400, f"more than {DRY_RUN_MAX_INPUTS} recorded inputs: narrow the window")
    assert candidate is not None
    baseline = current.routing
    sla = sla_targets(candidate, baseline)
    last = min(end, recording[-1].at + 86_400.0) if recording else end

    def replay(report: Report | None) -> DryRunView:
        total = 2 * len(recording)
        results = []
        for index, policy in enumerate((baseline, candidate)):
            step = None
            if report is not None:
                before = index * len(recording)
                step = functools.partial(_shifted, report, before, total)
            results.append(simulate(domain, policy, recording, start, last, sla, step))
        messages = sum(1 for item in recording if isinstance(item.event, MessageReceived))
        return DryRunView(
            domain=domain,
            messages=messages,
            agent_events=len(recording) - messages,
            current=_kpis(results[0]),
            candidate=_kpis(results[1]),
        )

    if body.background:

        async def work(report: Report) -> bytes:
            return msgspec.json.encode(await asyncio.to_thread(replay, report))

        jobs = request.app[PLANNING_JOBS]
        pool = request.app[DB_POOL]
        job = await jobs.start(pool, domain, "replay", principal.actor, body, work)
        return _json(job, status=202)
    # In a thread: the loop keeps routing while the engine replays.
    return _json(await asyncio.to_thread(replay, None))


dry_run = _handler(_dry_run, bounded=False)


def _shifted(report: Report, before: int, total: int, done: int, _: int) -> None:
    """The progress of one of several replays, as steps of them all."""
    report(before + done, total)


# -- queues and calendars: named parts of a domain's routing ---------------------------------


def _default_queue_in_use(routing: DomainPolicy, name: str) -> str | None:
    if name == routing.default_queue:
        return f"{name!r} is the domain's default queue (routing.default_queue)"
    return None


def _calendar_in_use(routing: DomainPolicy, name: str) -> str | None:
    users = [queue for queue, policy in routing.queues.items() if policy.calendar == name]
    if users:
        return f"queues {', '.join(sorted(users))} keep their hours in {name!r}"
    return None


@dataclass(frozen=True)
class _RoutingPart:
    """A named entry of a domain's routing section, read, replaced and deleted whole."""

    kind: str
    """``queue`` or ``calendar``: the path parameter, and the name in actions and messages."""
    field: str
    """The ``DomainPolicy`` mapping that holds them."""
    type: type[Any]
    in_use: Callable[[DomainPolicy, str], str | None]
    """Why one may not be deleted (409), or None."""

    def name(self, request: web.Request) -> str:
        name = request.match_info[self.kind]
        if not name or len(name) > QUEUE_MAX or not name.isprintable():
            raise _Refused(400, f"{self.kind} names are 1 to {QUEUE_MAX} printable characters")
        return name

    def of(self, domain: str, name: str) -> Callable[[ControlDocument], Any]:
        def read(document: ControlDocument) -> Any:
            config = document.domains.get(domain)
            return None if config is None else getattr(config.routing, self.field).get(name)

        return read

    def replaced(
        self, document: ControlDocument, domain: str, name: str, value: Any
    ) -> ControlDocument:
        config = document.domains.get(domain)
        if config is None:
            raise _Refused(404, f"unknown domain {domain!r}")
        entries = dict(getattr(config.routing, self.field))
        if value is None:
            reason = self.in_use(config.routing, name)
            if reason is not None:
                raise _Refused(409, reason)
            entries.pop(name, None)
        else:
            entries[name] = value
        routing = msgspec.structs.replace(config.routing, **{self.field: entries})
        return _with_domain(document, domain, msgspec.structs.replace(config, routing=routing))

    async def _change(
        self, request: web.Request, principal: Principal, domain: str, name: str, value: Any
    ) -> web.Response:
        return await _change(
            request,
            principal,
            resource=self.of(domain, name),
            edit=lambda document: self.replaced(document, domain, name, value),
            action=f"config.{self.kind}.{'delete' if value is None else 'put'}",
            domain=domain,
            target=f"{self.kind} {name}",
        )

    def routes(self) -> list[web.RouteDef]:
        @_handler
        async def get(request: web.Request) -> web.StreamResponse:
            domain, _ = await _admin(request)
            name = self.name(request)
            _, document = _current(request)
            return _read(request, self.of(domain, name)(document), f"{self.kind} {name!r}")

        @_handler
        async def put(request: web.Request) -> web.StreamResponse:
            domain, principal = await _admin(request)
            name = self.name(request)
            body = await _body(request, self.type, _api_limit(request))
            return await self._change(request, principal, domain, name, body)

        @_handler
        async def delete(request: web.Request) -> web.StreamResponse:
            domain, principal = await _admin(request)
            name = self.name(request)
            _, document = _current(request)
            if self.of(domain, name)(document) is None:
                raise _Refused(404, f"unknown {self.kind} {name!r}")
            return await self._change(request, principal, domain, name, None)

        path = f"{DOMAIN_PATH}/{self.field}/{{{self.kind}}}"
        return [web.get(path, get), web.put(path, put), web.delete(path, delete)]


QUEUES = _RoutingPart("queue", "queues", QueuePolicy, _default_queue_in_use)
CALENDARS = _RoutingPart("calendar", "calendars", BusinessCalendar, _calendar_in_use)


# -- channel endpoints ---------------------------------------------------------------------


def _kind(request: web.Request) -> EndpointKind:
    kind = ENDPOINT_KINDS.get(request.match_info["kind"])
    if kind is None:
        raise _Refused(404, f"endpoint kinds are {', '.join(ENDPOINT_KINDS)}")
    return kind


def _key(request: web.Request, kind: EndpointKind) -> str:
    key = request.match_info["key"]
    if not key or len(key) > 256 or not key.isprintable():
        raise _Refused(400, "endpoint keys are 1 to 256 printable characters")
    return key.lower() if kind.name == "email" else key


def _endpoint_of(
    domain: str, kind: EndpointKind, key: str
) -> Callable[[ControlDocument], EndpointView | None]:
    def read(document: ControlDocument) -> EndpointView | None:
        for item in kind.items(document.channels):
            if kind.key_of(item) == key:
                return _view(kind, item) if item.domain == domain else None
        return None

    return read


def _with_endpoint(
    document: ControlDocument, domain: str, kind: EndpointKind, key: str, value: Any
) -> ControlDocument:
    items = list(kind.items(document.channels))
    for index, item in enumerate(items):
        if kind.key_of(item) == key:
            if item.domain != domain:
                raise _Refused(409, f"{kind.name} endpoint {key!r} feeds another domain")
            del items[index]
            if value is not None:
                items.insert(index, value)
            break
    else:
        if value is not None:
            items.append(value)
    channels: ChannelsConfig = kind.replace(document.channels, items)
    return msgspec.structs.replace(document, channels=channels)


def _view(kind: EndpointKind, item: Any) -> EndpointView:
    return EndpointView(kind=kind.name, key=kind.key_of(item), settings=to_builtins(item))


@_handler
async def list_endpoints(request: web.Request) -> web.StreamResponse:
    domain, _ = await _admin(request)
    _, document = _current(request)
    if domain not in document.domains:
        raise _Refused(404, f"unknown domain {domain!r}")
    views = [_view(e.kind, e.item) for e in iter_endpoints(document.channels) if e.domain == domain]
    return _json(EndpointsView(endpoints=views))


@_handler
async def get_endpoint(request: web.Request) -> web.StreamResponse:
    domain, _ = await _admin(request)
    kind = _kind(request)
    key = _key(request, kind)
    _, document = _current(request)
    return _read(request, _endpoint_of(domain, kind, key)(document), f"{kind.name} endpoint")


_BODY_FIELDS = frozenset(EndpointSettings.__struct_fields__)
"""The settings ``PUT …/channels/{kind}/{key}`` replaces."""


@_handler
async def put_endpoint(request: web.Request) -> web.StreamResponse:
    domain, principal = await _admin(request)
    kind = _kind(request)
    key = _key(request, kind)
    body = await _body(request, EndpointSettings, _api_limit(request))
    named = {"domain": domain, kind.key_field: request.match_info["key"]}

    def edit(document: ControlDocument) -> ControlDocument:
        settings: dict[str, Any] = {}
        for item in kind.items(document.channels):
            if kind.key_of(item) == key:
                # What the body cannot name stays as it is (EndpointSettings).
                kept = to_builtins(item).items()
                settings = {name: value for name, value in kept if name not in _BODY_FIELDS}
                break
        try:
            value = msgspec.convert(settings | to_builtins(body) | named, kind.type)
        except msgspec.ValidationError as error:
            raise _Refused(400, f"invalid body: {error}") from None
        return _with_endpoint(document, domain, kind, key, value)

    return await _change(
        request,
        principal,
        resource=_endpoint_of(domain, kind, key),
        edit=edit,
        action="config.endpoint.put",
        domain=domain,
        target=f"{kind.name} endpoint",
    )


@_handler
async def delete_endpoint(request: web.Request) -> web.StreamResponse:
    domain, principal = await _admin(request)
    kind = _kind(request)
    key = _key(request, kind)
    _, document = _current(request)
    if _endpoint_of(domain, kind, key)(document) is None:
        raise _Refused(404, f"unknown {kind.name} endpoint")
    return await _change(
        request,
        principal,
        resource=_endpoint_of(domain, kind, key),
        edit=lambda document: _with_endpoint(document, domain, kind, key, None),
        action="config.endpoint.delete",
        domain=domain,
        target=f"{kind.name} endpoint",
    )


# -- installation ----------------------------------------------------------------------------


def setup_control(app: web.Application) -> None:
    """Add the configuration API's routes (after ``setup_api``: it uses the API's auth)."""
    app.router.add_routes(
        [
            web.get("/v1/config", get_config),
            web.put("/v1/config", put_config),
            web.get("/v1/config/versions", list_config_versions),
            web.get("/v1/config/versions/{version}", get_config_version),
            web.post("/v1/config/versions/{version}/restore", restore_config_version),
            web.get(DOMAIN_PATH + "/config", get_domain_config),
            web.put(DOMAIN_PATH + "/config", put_domain_config),
            web.delete(DOMAIN_PATH + "/config", delete_domain_config),
            web.get(DOMAIN_PATH + "/config/versions", list_domain_versions),
            web.post(DOMAIN_PATH + "/config/dry-run", dry_run),
            *QUEUES.routes(),
            *CALENDARS.routes(),
            web.get(DOMAIN_PATH + "/channels", list_endpoints),
            web.get(DOMAIN_PATH + "/channels/{kind}/{key}", get_endpoint),
            web.put(DOMAIN_PATH + "/channels/{kind}/{key}", put_endpoint),
            web.delete(DOMAIN_PATH + "/channels/{kind}/{key}", delete_endpoint),
        ]
    )
    app[EXTRA_OPERATIONS] = OPERATIONS

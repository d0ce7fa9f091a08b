"""Bodies and answers of the configuration API (``switchboard.control.api``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from router.engine import DomainPolicy
from schemas.limits import QueueName
from switchboard.control import store
from switchboard.control.document import Change


class ConfigChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a change: the version it made (the current one if it changed nothing)."""

    version: int
    changes: list[Change]
    """What changed; empty: nothing did, and no version was made."""
    published: bool = True
    """False: stored, but the broker did not take it yet; other processes get it when this
    one publishes it again (it retries) or at their next start."""


class VersionsPage(msgspec.Struct, frozen=True, kw_only=True):
    versions: list[store.VersionSummary]
    next_before: int | None
    """Pass as ``before`` for the next (older) page; null: no more."""


class EndpointView(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    """``twilio``, ``whatsapp``, ``messenger``, ``instagram``, ``telegram`` or ``email``."""
    key: str
    """The number, id, bot name or address identifying it."""
    settings: dict[str, Any]
    """Its settings, as in the ``[channels]`` section of the configuration file."""


class EndpointsView(msgspec.Struct, frozen=True, kw_only=True):
    endpoints: list[EndpointView]


EnvName = Annotated[str, msgspec.Meta(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
"""The name of an environment variable (or secrets file entry) holding a credential."""


class EndpointSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Body of ``PUT …/channels/{kind}/{key}``: the domain and the key come from the path;
    a field the kind does not have is refused. These fields are replaced (an absent one
    takes its default); an existing endpoint's settings the body cannot name (its
    ``priority``, ``skills``, ``language``, ``attributes``, a Twilio number's URLs, an
    email address's ``provider`` …) keep their value."""

    queue: QueueName | None = None
    """Queue of its conversations; default: the domain's default queue."""
    access_token_env: EnvName | None = None
    """``whatsapp``, ``messenger``, ``instagram``: the variable holding the access token."""
    secret_token_env: EnvName | None = None
    """``telegram``: the variable holding the webhook's ``secret_token``."""
    bot_token_env: EnvName | None = None
    """``telegram``: the variable holding the bot token."""
    access_token_secret_env: EnvName | None = None
    """``x``: the variable holding the access token's secret."""
    client_token_env: EnvName | None = None
    """``rbm``: the variable holding the client token of the agent's own webhook."""
    allow_groups: bool | None = None
    """``telegram``: also route group chats."""
    sending_domain: Annotated[str, msgspec.Meta(max_length=253)] | None = None
    """``email``: the Mailgun sending domain of replies."""


VERSION_MAX = 2**62
"""Versions are PostgreSQL ``bigint``s: a larger number names no version (400, not a
database error)."""

Instant = Annotated[float, msgspec.Meta(ge=0, le=253_402_300_799)]
"""Seconds since the Unix epoch, up to the end of year 9999."""


class DryRunIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/domains/{domain}/config/dry-run``: a candidate routing, given
    whole (``routing``) or as the domain's routing in an earlier version (``version``),
    and the window of recorded traffic to replay."""

    routing: DomainPolicy | None = None
    version: Annotated[int, msgspec.Meta(ge=1, le=VERSION_MAX)] | None = None
    start: Instant | None = msgspec.field(name="from", default=None)
    """Seconds since the Unix epoch; default: seven days before ``to`` (last week)."""
    end: Instant | None = msgspec.field(name="to", default=None)
    """Seconds since the Unix epoch; default: now."""
    background: bool = False
    """Run it as a planning job: 202 with the job at once, its progress and then this
    answer under ``GET …/planning/jobs/{job_id}``."""


class KpisView(msgspec.Struct, frozen=True, kw_only=True):
    assignments: int
    """Conversations the engine handed to an agent (transfers and pick-ups excluded)."""
    preferred_hit_ratio: float | None
    """Of those with a preferred agent, the share that agent took."""
    wait_p50_seconds: float | None
    wait_p95_seconds: float | None
    sla_breaches: int | None
    """Assignments that waited longer than the channel's first-response SLA (null: none set)."""
    fallbacks: int
    overflowed: int
    occupancy: float | None
    """Time-weighted share of online agents' slots in use."""


class DryRunView(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    messages: int
    agent_events: int
    current: KpisView
    """The routing the domain runs now, replayed over the same traffic."""
    candidate: KpisView

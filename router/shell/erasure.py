"""A customer's rows deleted, in the router's batch transaction (``router.engine.erasure``).

The API writes an ``erasures`` row naming the identities (``router.api.erasure``); the
worker reads the rows of a batch's erasures before it applies the batch
(``load_requests``), and ``erase`` runs after the batch's other writes, so that it takes
what the batch wrote about the customer too. Every statement goes through an index
(migration 0019): a customer's history is a few hundred rows, and the batch's
transaction stays short.

What goes: the conversations of the identities (and those the request named), their
messages and the messages sent to them, business-started messages to them, the profiles
and identity links, the consents and consent changes of their addresses, the router's
replay-log records naming them or their conversations, and dead letters whose bytes hold
one of their addresses (a raw record cannot be parsed to find whose it is; values shorter
than ``DEAD_LETTER_NEEDLE_MIN`` are not looked for, as they would match other records).

An erasure the retention job asked for (``keep_consents``) leaves the consents and their
changes: an expired customer's opt-out is still honoured (``consent_history`` expires the
changes). A retention walk's position naming one of the identities is deleted with them.

Their topic keys go too (``runtime.sealing``): those of their identities, conversations,
threads and sent messages, at once or, with ``kafka.key_shred_delay_seconds``, once the
delay has passed (the subject is taken off at once; the retention job deletes the key).
From then on no copy of their sealed records on any topic can be opened.

What stays: assignments (an agent's work: who, when, how long; they name a conversation
id only), the audit log (it names the customer by keyed digest, and records the erasure
itself), and the outbox's events not yet published (they leave within the second).
The ``erasures`` row keeps what was deleted, by table, and loses whom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import asyncpg
import msgspec

from router.engine import EraseCustomer
from runtime.sealing import conversation_subject, sent_subject, subject_digest, thread_subject
from schemas.identity import PHONE_KINDS

DEAD_LETTER_NEEDLE_MIN = 6
"""Dead letters are searched for address values at least this long."""

ERASED: Final = frozenset(
    {
        "conversations",
        "messages",
        "outbound_messages",
        "customers",
        "customer_identities",
        "consents",
        "marketing_consents",
        "consent_changes",
        "agent_events",
        "dead_letters",
        "erasures",
        "retention_scans",
        "topic_keys",
    }
)
"""Tables whose rows about the customer an erasure deletes (``erasures``: empties)."""

KEPT: Final[Mapping[str, str]] = {
    "audit_log": "Who did what, the erasure included: it names the customer by keyed "
    "digest only (pseudonymous), and an erasure must be provable afterwards.",
    "outbox": "Transient: events of batches already committed, published within the second "
    "and then deleted.",
}
"""Tables holding customer personal data that an erasure leaves, with the reason."""


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    identities: tuple[str, ...]
    conversation_ids: tuple[str, ...]


_LOAD = """
SELECT erasure_id, identities, conversation_ids FROM erasures
WHERE domain = $1 AND erasure_id = ANY($2::text[]) AND completed_at IS NULL
"""


async def load_requests(
    conn: asyncpg.Connection, erasures: list[tuple[str, str]]
) -> dict[str, ErasureRequest]:
    """The pending requests of ``(domain, erasure id)`` pairs, by erasure id."""
    by_domain: dict[str, list[str]] = {}
    for domain, erasure_id in erasures:
        by_domain.setdefault(domain, []).append(erasure_id)
    found = {}
    for domain, ids in by_domain.items():
        for row in await conn.fetch(_LOAD, domain, ids):
            found[row["erasure_id"]] = ErasureRequest(
                tuple(row["identities"]), tuple(row["conversation_ids"])
            )
    return found


def addresses(identities: tuple[str, ...]) -> list[str]:
    """The consent addresses among ``identities``: phone numbers and email addresses."""
    found = []
    for identity in identities:
        kind, _, value = identity.partition(":")
        if (kind in PHONE_KINDS or kind == "email") and value:
            found.append(value)
    return found


def needles(identities: tuple[str, ...]) -> list[bytes]:
    """How an identity's address can appear in a raw record or a provider's request: the
    identity, its value, its value URL-encoded (form posts), a phone number without its
    ``+`` (WhatsApp's ``wa_id``)."""
    found: set[str] = set()
    for identity in identities:
        kind, _, value = identity.partition(":")
        found.update((identity, value, quote(value, safe="")))
        if kind in PHONE_KINDS:
            found.add(value.lstrip("+"))
    return sorted(n.encode() for n in found if len(n) >= DEAD_LETTER_NEEDLE_MIN)


_DELETE_CONVERSATIONS = """
DELETE FROM conversations
WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR conversation_id = ANY($3::text[]))
RETURNING conversation_id, conversation_key
"""
_DELETE_MESSAGES = "DELETE FROM messages WHERE domain = $1 AND conversation_id = ANY($2::text[])"
_DELETE_OUTBOUND = """
DELETE FROM outbound_messages
WHERE domain = $1 AND (conversation_id = ANY($2::text[])
    OR (kind = 'notification' AND customer_id = ANY($3::text[])))
RETURNING provider_message_id
"""
_DELETE_TOPIC_KEYS = "DELETE FROM topic_keys WHERE domain = $1 AND subject = ANY($2::bytea[])"
_SHRED_TOPIC_KEYS_LATER = """
UPDATE topic_keys SET subject = NULL, shred_at = now() + make_interval(secs => $3)
WHERE domain = $1 AND subject = ANY($2::bytea[])
"""
_DELETE_CUSTOMERS = "DELETE FROM customers WHERE domain = $1 AND customer_id = ANY($2::text[])"
_DELETE_IDENTITIES = """
DELETE FROM customer_identities
WHERE domain = $1 AND (identity = ANY($2::text[]) OR customer_id = ANY($2::text[]))
"""
_DELETE_CONSENTS = """
WITH every AS (
    DELETE FROM consents
    WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR address = ANY($3::text[]))
    RETURNING 1
), marketing AS (
    DELETE FROM marketing_consents
    WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR address = ANY($3::text[]))
    RETURNING 1
)
SELECT (SELECT count(*) FROM every) + (SELECT count(*) FROM marketing)
"""
"""The consents of every scope (``runtime.outbound.CONSENT_TABLES``): how many."""
_DELETE_CONSENT_CHANGES = """
DELETE FROM consent_changes
WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR address = ANY($3::text[]))
"""
_DELETE_REPLAY_LOG = """
DELETE FROM agent_events
WHERE domain = $1 AND (
    (payload ? 'customer_id' AND payload->>'customer_id' = ANY($2::text[]))
    OR (payload ? 'conversation_id' AND payload->>'conversation_id' = ANY($3::text[]))
    OR (payload ? 'identity' AND payload->>'identity' = ANY($2::text[]))
    OR (payload ? 'from_customer_id' AND payload->>'from_customer_id' = ANY($2::text[])))
"""
_DELETE_DEAD_LETTERS = """
DELETE FROM dead_letters
WHERE (domain = $1 OR domain IS NULL) AND value IS NOT NULL
    AND EXISTS (SELECT 1 FROM unnest($2::bytea[]) AS n WHERE position(n IN value) > 0)
"""
_KEEPS_CONSENTS = "SELECT keep_consents FROM erasures WHERE domain = $1 AND erasure_id = $2"
_DELETE_SCAN_MARKS = "DELETE FROM retention_scans WHERE domain = $1 AND after = ANY($2::text[])"
_COMPLETE = """
UPDATE erasures SET identities = '{}', conversation_ids = '{}', completed_at = now(),
    erased = $3::jsonb
WHERE domain = $1 AND erasure_id = $2
"""


def _count(status: str) -> int:
    """The row count of a ``DELETE n`` status."""
    return int(status.rsplit(" ", 1)[-1])


async def erase(
    conn: asyncpg.Connection, domain: str, effect: EraseCustomer, *, key_shred_delay: int = 0
) -> dict[str, int]:
    """Delete every row about the erased customer, and their topic keys (at once, or
    after ``key_shred_delay`` seconds: ``runtime.sealing``); close the request with the
    counts."""
    ids = list(effect.identities)
    gone = await conn.fetch(_DELETE_CONVERSATIONS, domain, ids, list(effect.conversation_ids))
    conversations = sorted({*effect.conversation_ids, *(r["conversation_id"] for r in gone)})
    mail = addresses(effect.identities)
    keep_consents = bool(await conn.fetchval(_KEEPS_CONSENTS, domain, effect.erasure_id))
    sent = await conn.fetch(_DELETE_OUTBOUND, domain, conversations, ids)
    subjects = [
        subject_digest(subject)
        for subject in (
            *ids,
            *(conversation_subject(c) for c in conversations),
            *(thread_subject(r["conversation_key"]) for r in gone),
            *(sent_subject(r["provider_message_id"]) for r in sent if r["provider_message_id"]),
        )
    ]
    erased = {
        "conversations": len(gone),
        "messages": _count(await conn.execute(_DELETE_MESSAGES, domain, conversations)),
        "outbound_messages": len(sent),
        "customers": _count(await conn.execute(_DELETE_CUSTOMERS, domain, ids)),
        "identities": _count(await conn.execute(_DELETE_IDENTITIES, domain, ids)),
        "consents": 0
        if keep_consents
        else int(await conn.fetchval(_DELETE_CONSENTS, domain, ids, mail)),
        "consent_changes": 0
        if keep_consents
        else _count(await conn.execute(_DELETE_CONSENT_CHANGES, domain, ids, mail)),
        "replay_log": _count(await conn.execute(_DELETE_REPLAY_LOG, domain, ids, conversations)),
        "dead_letters": _count(
            await conn.execute(_DELETE_DEAD_LETTERS, domain, needles(effect.identities))
        ),
        "topic_keys": _count(
            await conn.execute(_DELETE_TOPIC_KEYS, domain, subjects)
            if key_shred_delay == 0
            else await conn.execute(_SHRED_TOPIC_KEYS_LATER, domain, subjects, key_shred_delay)
        ),
    }
    await conn.execute(_DELETE_SCAN_MARKS, domain, ids)
    await conn.execute(_COMPLETE, domain, effect.erasure_id, msgspec.json.encode(erased).decode())
    return erased

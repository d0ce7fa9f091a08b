"""Attachments a provider accepts in a reply: kinds, media types, sizes and counts, checked
before anything is sent (a refusal names the rule, never the URL).

Each provider module declares its ``MediaLimits`` from the provider's documentation; egress
checks a reply against them (``check_attachments``) and fails it at once, without calling
the provider, when an attachment breaks one. An attachment's media type is its
``content_type``, else the one its file name or URL path suggests; its size is
``size_bytes`` when known (a provider fetching a URL refuses an oversized file itself).
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from schemas import Attachment

EVERY_MEDIA_TYPE = frozenset(
    {
        "application/*",
        "audio/*",
        "font/*",
        "image/*",
        "message/*",
        "model/*",
        "text/*",
        "video/*",
    }
)
"""Every registered top-level media type: for providers that take any file (email)."""


@dataclass(frozen=True, slots=True)
class MediaRule:
    """One kind of media a provider sends: its media types and largest size."""

    kind: str
    """The provider's name of the kind (``image``, ``document``, ``audio``, ``video``, ``file``)."""
    types: frozenset[str]
    """Media types of this kind, lower case; a ``type/*`` entry admits the whole type."""
    max_bytes: int


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """What one provider accepts as a reply's attachments."""

    provider: str
    rules: tuple[MediaRule, ...]
    """In order of preference: an attachment takes the first rule admitting its type."""
    max_count: int = 1
    """Attachments in one reply (more are refused, not dropped)."""
    max_total_bytes: int | None = None
    """All attachments together (Twilio MMS: 5 MB)."""

    def rule_for(self, content_type: str) -> MediaRule | None:
        main = content_type.split("/", 1)[0] + "/*"
        for rule in self.rules:
            if content_type in rule.types or main in rule.types:
                return rule
        return None


class MediaRefused(Exception):
    """A reply's attachments break the provider's limits: the reason, for the send's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def media_type(attachment: Attachment) -> str | None:
    """The attachment's media type: declared, else guessed from its file name or URL path."""
    if attachment.content_type:
        return attachment.content_type.split(";", 1)[0].strip().lower() or None
    name = attachment.filename or urllib.parse.urlsplit(attachment.url).path
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed


def check_attachments(
    attachments: Sequence[Attachment], limits: MediaLimits
) -> list[tuple[Attachment, MediaRule]]:
    """Each attachment with the rule it is sent under; ``MediaRefused`` when one breaks
    the provider's limits (unknown or refused type, too large, too many)."""
    if len(attachments) > limits.max_count:
        raise MediaRefused(
            f"{limits.provider} takes at most {limits.max_count} attachment(s) per message"
        )
    checked: list[tuple[Attachment, MediaRule]] = []
    total = 0
    for number, attachment in enumerate(attachments, 1):
        kind = media_type(attachment)
        if kind is None:
            raise MediaRefused(f"attachment {number}: media type unknown")
        rule = limits.rule_for(kind)
        if rule is None:
            raise MediaRefused(f"attachment {number}: {limits.provider} does not send {kind}")
        size = attachment.size_bytes
        if size is not None:
            if size > rule.max_bytes:
                raise MediaRefused(
                    f"attachment {number}: {size} bytes, over {limits.provider}'s"
                    f" {rule.max_bytes} for {rule.kind}"
                )
            total += size
        checked.append((attachment, rule))
    if limits.max_total_bytes is not None and total > limits.max_total_bytes:
        raise MediaRefused(
            f"attachments total {total} bytes, over {limits.provider}'s {limits.max_total_bytes}"
        )
    return checked

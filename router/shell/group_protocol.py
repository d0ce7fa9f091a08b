"""What the routers of a consumer group tell each other when it rebalances: whether every
one of them reads a conversation's activity saved alone (migration 0027,
``router.save_activity_alone``).

A router of a version before 0027 restores a conversation from its record alone: from a
record whose latest activity was saved beside it, it would restore a stale conversation
(when the customer last wrote, the message count, the reply window, the next deadline).
So no router saves activity alone while one of those is in the group, whatever its
setting, and a rolling upgrade needs no second roll.

How it is known, with nothing but the group protocol (any Kafka broker): the protocol
stays the range assignor, under its name ``range`` (older routers share the group, and
partitions are assigned as before), and a router of this version puts its capabilities
in its subscription's user data, ``READS_ACTIVITY`` among them. Older routers send none.
The group's leader, when it is of this version, marks every member's assignment with
``READS_ACTIVITY`` only when every member's subscription carried it; a leader of an older
version marks nothing. A router saves activity alone only while its latest assignment is
marked. Capabilities are comma-separated, so a later version can add its own and still
say this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

READS_ACTIVITY: Final = b"switchboard-reads-activity"
"""The capability: this router restores a conversation from its record and the activity
saved beside it."""


def capabilities(user_data: bytes | None) -> set[bytes]:
    """The capabilities a subscription or an assignment says (none: an older router's)."""
    return set((user_data or b"").split(b","))


def range_assignor(on_assignment: Callable[[bool], None]) -> type[RangePartitionAssignor]:
    """The range assignor, telling ``on_assignment`` at every assignment whether every
    router of the group reads activity saved alone (it is called before the partitions'
    listener, so before any of them is loaded)."""

    class RangeReadingActivity(RangePartitionAssignor):  # type: ignore[misc]  # aiokafka is untyped
        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), READS_ACTIVITY)

        @classmethod
        def assign(
            cls,
            cluster: ClusterMetadata,
            members: Mapping[str, ConsumerProtocolMemberMetadata],
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            assigned = super().assign(cluster, members)
            every_one = all(READS_ACTIVITY in capabilities(m.user_data) for m in members.values())
            mark = READS_ACTIVITY if every_one else b""
            return {
                member: ConsumerProtocolMemberAssignment(
                    assignment.version, assignment.assignment, mark
                )
                for member, assignment in assigned.items()
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            on_assignment(READS_ACTIVITY in capabilities(assignment.user_data))

    return RangeReadingActivity

"""``schemas.ids``: the hot paths' name-based ids are exactly the standard library's."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from adapters.base import INBOUND_NAMESPACE, inbound_event_id
from schemas.ids import uuid5_of


@given(st.uuids(), st.text())
def test_the_ids_are_uuid5_of_their_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_of(namespace)(name) == str(uuid.uuid5(namespace, name))


@given(st.text(min_size=1), st.sampled_from(["sms", "whatsapp", "email"]), st.text(min_size=1))
def test_an_inbound_message_id_is_uuid5_of_domain_channel_and_provider_id(
    domain: str, channel: str, provider_message_id: str
) -> None:
    name = f"{domain}/{channel}/{provider_message_id}"
    assert inbound_event_id(domain, channel, provider_message_id) == str(
        uuid.uuid5(INBOUND_NAMESPACE, name)
    )

"""A Twilio URL whose path no route served when the service started is served once the
configuration names it, without a restart (``adapters.twilio_routes.late_paths``): a
number added through the configuration API (``PUT /v1/config``) with its own
``webhook_url`` takes its first
signed webhook at once, signed as Twilio signs it (the Twilio SDK's ``RequestValidator``)."""

from __future__ import annotations

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from schemas import INBOUND_DECODER, MessageReceived, topics
from tests.conftest import Infrastructure
from tests.support import Service, TopicReader, make_config, running_service, wait_until

pytestmark = pytest.mark.integration

ACCOUNT = "AC00000000000000000000000000000001"
TOKEN = "twilio-late-paths-auth-token"
ENVIRON = {"TWILIO_AUTH_TOKEN": TOKEN, "SWITCHBOARD_ADMIN_TOKEN": "late-paths-admin"}
ADMIN = {"Authorization": "Bearer late-paths-admin"}
NEW_NUMBER = "+14155550142"


async def _post(service: Service, path_qs: str, params: dict[str, str]) -> tuple[int, str]:
    """A webhook on ``path_qs``, signed for the URL it is sent to."""
    url = service.url(path_qs)
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    async with service.session.post(
        url, data=params, headers={"X-Twilio-Signature": signature}
    ) as response:
        return response.status, await response.text()


async def _version(session: aiohttp.ClientSession, service: Service) -> int:
    async with session.get(service.url("/metrics")) as response:
        for line in (await response.text()).splitlines():
            if line.startswith("switchboard_config_version "):
                return int(float(line.split()[1]))
    return 0


async def test_a_number_added_with_a_url_on_a_new_path_is_served_at_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "twilio": {
                    "account_sid": ACCOUNT,
                    "numbers": [{"number": "+14155550100", "domain": "acme"}],
                }
            }
        },
    )
    message = {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": ACCOUNT,
        "From": "+14155552671",
        "To": NEW_NUMBER,
        "Body": "hello from the new number",
        "NumMedia": "0",
    }
    async with (
        running_service(config, ENVIRON) as service,
        TopicReader(config, topics.INBOUND) as inbound,
    ):
        path = "/hooks/twilio/inbound?tenant=acme"
        assert (await _post(service, path, message))[0] == 404  # nothing names it yet

        async with service.session.get(service.url("/v1/config"), headers=ADMIN) as response:
            assert response.status == 200, await response.text()
            document, tag = await response.json(), response.headers["ETag"]
        numbers = document["channels"]["twilio"]["numbers"]
        numbers.append({"number": NEW_NUMBER, "domain": "acme", "webhook_url": service.url(path)})
        async with service.session.put(
            service.url("/v1/config"), json=document, headers={**ADMIN, "If-Match": tag}
        ) as response:
            assert response.status == 200, await response.text()
            version = (await response.json())["version"]
        await wait_until(
            lambda: _at_least(service, version), what="the adapters at the new version"
        )

        status, body = await _post(service, path, message)
        assert (status, body) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response/>')
        records = await inbound.wait_for(
            lambda rs: any(isinstance(INBOUND_DECODER.decode(r.value), MessageReceived) for r in rs)
        )
        [received] = [INBOUND_DECODER.decode(r.value) for r in records]
        assert isinstance(received, MessageReceived)
        assert (received.endpoint, received.customer_address) == (NEW_NUMBER, "+14155552671")

        # Signed for another URL, or on a path nothing names: refused as before.
        forged = {**message, "MessageSid": "SM" + "2" * 32, "Body": "changed"}
        url = service.url(path)
        signature = RequestValidator(TOKEN).compute_signature(url, message)
        async with service.session.post(
            url, data=forged, headers={"X-Twilio-Signature": signature}
        ) as response:
            assert response.status == 403
        assert (await _post(service, "/hooks/twilio/elsewhere", message))[0] == 404
        async with service.session.get(service.url(path)) as response:
            assert response.status == 404  # not a route: only POSTs are taken


async def _at_least(service: Service, version: int) -> bool:
    return await _version(service.session, service) >= version

"""Input limits of web chat and the agent API on the real service (``schemas.limits``).

1. Free text is cleaned and routed: a NUL in a web chat message or an agent's name is
   removed, a lone surrogate escape read as U+FFFD, and the router stores it and goes on.
2. Identifiers are refused with 400 and the reason: in bodies and in path ids (a NUL in a
   path id is a 400, not a database error).
3. Bodies: a Content-Encoding is 415 before the body is read; JSON nested too deeply is 400.
4. ``/openapi.json`` states the maxima.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from router.api.openapi import document
from schemas.limits import (
    AGENT_ID_MAX,
    CONVERSATION_ID_MAX,
    CUSTOMER_ID_MAX,
    NAME_MAX,
    QUEUE_MAX,
    URL_MAX,
)
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

MESSAGES = "/v1/domains/acme/webchat/messages"
AGENT = "/v1/domains/acme/agents/x"
CONVERSATION = "/v1/domains/acme/conversations/"
DEEP = b"[" * 5000 + b"]" * 5000


async def post_webchat_raw(api: Api, body: bytes) -> tuple[int, Any]:
    """POST ``body`` as it is, but for each ``"visitor-NNNN"`` in it the real session id of
    that visitor, with the first visitor's token."""
    names = re.findall(rb'"(visitor-\d{4})"', body) or [b"visitor-0001"]
    for name in names:
        session = await api.service.visitor(name.decode())
        body = body.replace(b'"' + name + b'"', b'"' + session.session_id.encode() + b'"')
    first = await api.service.visitor(names[0].decode())
    return await api.call(
        "POST",
        MESSAGES,
        None,
        data=body,
        headers={"Content-Type": "application/json", **first.auth},
    )


async def test_free_text_with_nul_or_a_lone_surrogate_is_cleaned_and_routed(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        # 1. A NUL in web chat text: stored without it, and the router goes on.
        status, _ = await post_webchat_raw(
            api,
            b'{"session_id": "visitor-0001", "message_id": "m1", "text": "hello\\u0000world"}',
        )
        assert status == 202
        status, _ = await post_webchat_raw(
            api,
            b'{"session_id": "visitor-0002", "message_id": "m1", "text": "cut \\ud83d emoji"}',
        )
        assert status == 202
        # A NUL and a lone surrogate in an agent's name.
        status, _ = await api.call("PUT", AGENT, data=b'{"name": "A\\u0000nn \\ud800"}')
        assert status == 202
        await api.customer_writes("visitor-0003", "m1", "after them")

        async def stored() -> list[str]:
            rows = await api.pool.fetch("SELECT text FROM messages ORDER BY text")
            return [row["text"] for row in rows]

        await wait_until(
            lambda: _all_in(stored(), ["after them", "cut \ufffd emoji", "helloworld"]),
            what="the three messages routed and stored",
        )
        name = await wait_until(
            lambda: api.pool.fetchval("SELECT name FROM agents WHERE agent_id = 'x'"),
            what="agent x stored",
        )
        assert name == "Ann \ufffd"


async def _all_in(texts: Any, wanted: list[str]) -> bool:
    found = await texts
    return all(text in found for text in wanted)


async def test_identifiers_and_bodies_are_refused_with_4xx(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        # 2. Web chat identifiers.
        for body, reason in [
            (
                b'{"session_id": "visitor-0001", "message_id": "m\\u0000", "text": "x"}',
                "message_id",
            ),
            (
                b'{"session_id": "visitor-0001", "message_id": "m", "text": "x",'
                b' "user_id": "u\\u0000", "user_hash": "h"}',
                "user_id",
            ),
            (
                b'{"session_id": "visitor-0001", "message_id": "m", '
                b'"attachments": [{"url": "https://x/\\u0000"}]}',
                "attachment url",
            ),
            (
                b'{"session_id": "visitor-0001", "message_id": "m", '
                b'"attachments": [{"url": "https://x/' + b"a" * URL_MAX + b'"}]}',
                "attachment url",
            ),
            (b'{"session_id": "visitor\\u0000001", "message_id": "m", "text": "x"}', "session_id"),
            (b'{"session_id": "visitor-0001\\n", "message_id": "m", "text": "x"}', "session_id"),
        ]:
            status, answer = await post_webchat_raw(api, body)
            assert status == 400, (body[:80], answer)
            assert reason in answer["error"]

        # The API's bodies.
        for body in (
            {"queues": ["q\u0000"]},
            {"queues": ["q\n"]},
            {"skills": ["s" * 65]},
            {"name": "n" * (NAME_MAX + 1)},
        ):
            status, answer = await api.call("PUT", AGENT, json=body)
            assert status == 400, (body, answer)
        status, answer = await api.call(
            "PUT", "/v1/domains/acme/customers/c1/owner", json={"agent_id": "ann\n"}
        )
        assert status == 400, answer

        # Path ids: a NUL or an over-long id is a 400, never "database unavailable".
        for path in (
            CONVERSATION + "%00",
            CONVERSATION + "c%00",
            CONVERSATION + "c" * (CONVERSATION_ID_MAX + 1),
        ):
            assert (await api.call("GET", path))[0] == 400, path
            assert (await api.call("POST", path + "/close", json={}))[0] == 400, path
        for path in (
            "/v1/domains/acme/customers/%00/owner",
            "/v1/domains/acme/customers/" + "c" * (CUSTOMER_ID_MAX + 1) + "/owner",
        ):
            assert (await api.call("DELETE", path))[0] == 400, path
        assert (await api.call("GET", "/v1/domains/acme/agents/%00"))[0] == 400
        assert (await api.call("GET", "/v1/domains/ac%00me/queues", "bootstrap"))[0] == 404

        # 3. Bodies: compressed (even validly) is 415 before reading; deep JSON is 400.
        visitor = (await api.service.visitor("visitor-0001")).auth
        for path, method, who, auth in (
            (MESSAGES, "POST", None, visitor),
            (AGENT, "PUT", "admin", {}),
            (CONVERSATION + "c/reply", "POST", "admin", {}),
        ):
            for body in (b"\x00junk" * 10, gzip.compress(b"{}")):
                status, answer = await api.call(
                    method,
                    path,
                    who,
                    data=body,
                    headers={
                        "Content-Encoding": "gzip",
                        "Content-Type": "application/json",
                        **auth,
                    },
                )
                assert status == 415, (path, answer)
            status, answer = await api.call(
                method,
                path,
                who,
                data=b'{"text": ' + DEEP + b"}",
                headers={"Content-Type": "application/json", **auth},
            )
            assert status == 400, (path, answer)

        # Nothing above was a server error, nor reached the router as a poison record.
        assert await api.pool.fetchval("SELECT count(*) FROM dead_letters") == 0


def test_the_openapi_document_states_the_maxima() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    assert schemas["AgentIn"]["properties"]["name"]["maxLength"] == NAME_MAX
    assert schemas["AgentIn"]["properties"]["queues"]["items"]["maxLength"] == QUEUE_MAX
    assert schemas["ReplyIn"]["properties"]["text"]["maxLength"] == 10_000
    assert schemas["AttachmentIn"]["properties"]["url"]["maxLength"] == URL_MAX
    parameters = {
        p["name"]: p["schema"]
        for path in doc["paths"].values()
        for operation in path.values()
        for p in operation["parameters"]
        if p["in"] == "path"
    }
    assert parameters["agent_id"]["maxLength"] == AGENT_ID_MAX
    assert parameters["customer_id"]["maxLength"] == CUSTOMER_ID_MAX
    assert parameters["conversation_id"]["maxLength"] == CONVERSATION_ID_MAX
    put_agent = doc["paths"]["/v1/domains/{domain}/agents/{agent_id}"]["put"]
    assert "415" in put_agent["responses"]

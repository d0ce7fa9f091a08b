"""Batches and campaigns through the running service (router role: no sender, so messages
stay ``queued`` unless a cancel takes them): JSON with defaults, CSV, NDJSON, one result
per message, pause / resume / cancel with their audit entries, the list, and a batch of
10,000 messages."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.test_outbound import CUSTOMER, OUTBOUND, WA_ID, outbound_api, requested
from tests.conftest import Infrastructure
from tests.support import opt_out

pytestmark = pytest.mark.timeout(300)

BATCH = OUTBOUND + "/batch"
CAMPAIGNS = "/v1/domains/acme/campaigns"


def number(n: int) -> str:
    return f"+1415{n:07d}"


def outcomes(results: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """(index, status or error) of each result."""
    return [(r["index"], r.get("error") or r["status"]) for r in results]


async def test_a_json_batch_with_defaults_answers_one_result_per_message(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await opt_out(api.pool, "sms", CUSTOMER)
        template = {"name": "delivery_update", "language": "en_US", "parameters": ["Di", "D-4"]}
        body = {
            "campaign": {"id": "spring-sale", "name": "Spring sale"},
            "defaults": {
                "channel": "sms",
                "text": "Spring sale: 20% off today. Reply to ask us anything.",
                "attributes": {"campaign": "spring"},
                "answer": {"mode": "queue", "queue": "billing"},
            },
            "messages": [
                {"to": number(1), "attributes": {"order_id": "1"}},
                {"to": "nope"},
                {"to": number(2), "client_key": "spring-2"},
                {"to": number(3), "client_key": "spring-2"},
                42,
                {
                    "to": number(4),
                    "channel": "whatsapp",
                    "from": WA_ID,
                    "text": "",
                    "template": template,
                },
                {"to": CUSTOMER},
            ],
        }
        status, answer = await api.call("POST", BATCH, "ann", json=body)
        assert status == 403
        status, answer = await api.call("POST", BATCH, json=body)
        assert status == 202, answer
        assert outcomes(answer["results"]) == [
            (0, "queued"),
            (1, "to: a sms address is an E.164 number: + and 7 to 15 digits"),
            (2, "queued"),
            (3, "client_key repeated in this batch"),
            (4, "a message is a JSON object"),
            (5, "queued"),
            (6, "opted_out"),
        ]
        assert [r.get("http_status") for r in answer["results"]] == [
            None,
            400,
            None,
            400,
            400,
            None,
            409,
        ]
        assert (answer["campaign_id"], answer["accepted"], answer["refused"]) == (
            "spring-sale",
            3,
            4,
        )
        first = answer["results"][0]
        row = await api.pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE outbound_id = $1", first["outbound_id"]
        )
        request = requested(row)
        assert (row["campaign_id"], request.campaign_id) == ("spring-sale", "spring-sale")
        assert request.attributes == {"campaign": "spring", "order_id": "1"}
        assert (request.answer.mode, request.answer.queue) == ("queue", "billing")
        assert request.text == "Spring sale: 20% off today. Reply to ask us anything."
        whatsapp = await api.pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE outbound_id = $1",
            answer["results"][5]["outbound_id"],
        )
        assert requested(whatsapp).template is not None

        status, campaign = await api.call("GET", f"{CAMPAIGNS}/spring-sale")
        assert status == 200, campaign
        assert (campaign["name"], campaign["status"], campaign["total"], campaign["counts"]) == (
            "Spring sale",
            "running",
            3,
            {"queued": 3},
        )
        assert campaign["created_by"] != "local"

        # Again: the keyed message is a duplicate, the others are new sends.
        status, again = await api.call(
            "POST", BATCH, json={**body, "messages": body["messages"][:3]}
        )
        assert status == 202
        assert [r.get("duplicate", False) for r in again["results"]] == [False, False, True]
        assert again["results"][2]["outbound_id"] == answer["results"][2]["outbound_id"]
        assert (again["accepted"], again["duplicates"], again["refused"]) == (1, 1, 1)

        status, audit = await api.call("GET", "/v1/domains/acme/audit?action=campaign.send")
        assert [e["detail"]["messages"] for e in audit["entries"]] == [3, 1]
        assert {e["target"] for e in audit["entries"]} == {"campaign spring-sale"}

        for bad, reason in (
            ({"messages": []}, "the batch holds no message"),
            ({"messages": [{}] * 10_001}, None),
            ({"defaults": {"to": number(5)}, "messages": [{}]}, None),
            ({"campaign": {"id": "no spaces"}, "messages": [{}]}, None),
        ):
            status, answer = await api.call("POST", BATCH, json=bad)
            assert status == 400, (bad, answer)
            if reason is not None:
                assert answer == {"error": reason}


async def test_csv_and_ndjson_batches(infrastructure: Infrastructure, database_url: str) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        csv = (
            "\ufeffchannel,from,to,template,template.language,parameters.1,parameters.2,"
            "attributes.order_id,client_key,answer.expires_in_seconds\r\n"
            f"whatsapp,{WA_ID},+1 415 000 0001,delivery_update,en_US,Ann,A-1,A-1,csv-1,3600\r\n"
            f"whatsapp,{WA_ID},{number(2)},delivery_update,en_US,Bob,,B-2,csv-2,\r\n"
            ",,,,,,,,,\r\n"
            f'sms,,{number(3)},reminder,en,"Monday, 10:00",,,csv-3,\r\n'
            f"sms,,{number(4)}\r\n"
        )
        status, answer = await api.call(
            "POST",
            BATCH + "?campaign_id=csv-campaign&campaign_name=From%20a%20file",
            data=csv.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert status == 202, answer
        assert outcomes(answer["results"]) == [
            (0, "queued"),
            (1, "template 'delivery_update' takes 2 parameters, 1 given"),
            (2, "queued"),
            (3, "the row has 3 cells, the header 10"),
        ]
        assert answer["campaign_id"] == "csv-campaign"
        row = await api.pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE outbound_id = $1",
            answer["results"][0]["outbound_id"],
        )
        request = requested(row)
        assert (row["client_key"], row["customer_id"], request.attributes) == (
            "csv-1",
            "phone:+14150000001",
            {"order_id": "A-1"},
        )
        assert request.template is not None
        assert request.template.parameters == ("Ann", "A-1")
        assert request.answer.until - request.occurred_at == pytest.approx(3600)
        reminder = await api.pool.fetchrow(
            "SELECT * FROM outbound_messages WHERE outbound_id = $1",
            answer["results"][2]["outbound_id"],
        )
        assert requested(reminder).text == (
            "Reminder: your appointment is on Monday, 10:00. Reply here to change it."
        )
        status, campaign = await api.call("GET", f"{CAMPAIGNS}/csv-campaign")
        assert (campaign["name"], campaign["total"]) == ("From a file", 2)

        for bad, reason in (
            ("channel,nope\r\nsms,x\r\n", "unknown CSV column 'nope'"),
            ("channel,to,to\r\n", "a CSV column is named twice"),
            ("", "the CSV has no header row"),
        ):
            status, answer = await api.call(
                "POST", BATCH, data=bad.encode(), headers={"Content-Type": "text/csv"}
            )
            assert (status, answer) == (400, {"error": reason}), bad
        status, answer = await api.call(
            "POST", BATCH, data=b"\xff\xfe", headers={"Content-Type": "text/csv"}
        )
        assert (status, answer) == (400, {"error": "the CSV is not UTF-8"})

        ndjson = (
            b'{"channel": "sms", "to": "+14150000011", "text": "one"}\n'
            b"\n"
            b"{not json\n"
            b'{"channel": "sms", "to": "+14150000012", "text": "two", "answer": {"mode": "last_owner"}}\n'
            b'["a list"]\n'
        )
        status, answer = await api.call(
            "POST",
            BATCH + "?campaign_id=lines",
            data=ndjson,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert status == 202, answer
        assert outcomes(answer["results"]) == [
            (0, "queued"),
            (1, "the line is not a JSON object"),
            (2, "queued"),
            (3, "a message is a JSON object"),
        ]
        status, answer = await api.call(
            "POST", BATCH, data=b"x", headers={"Content-Type": "text/plain"}
        )
        assert status == 415, answer


async def test_a_campaign_pauses_resumes_cancels_and_is_listed(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        messages = [{"to": number(n)} for n in range(5)]
        defaults = {"channel": "sms", "text": "Your parcel is on its way"}
        for campaign in ("first", "second"):
            status, answer = await api.call(
                "POST",
                BATCH,
                json={"campaign": {"id": campaign}, "defaults": defaults, "messages": messages},
            )
            assert (status, answer["accepted"]) == (202, 5), answer
        first = f"{CAMPAIGNS}/first"
        status, view = await api.call("POST", first + "/pause")
        assert (status, view["status"], view["counts"]) == (200, "paused", {"queued": 5})
        status, view = await api.call("POST", first + "/pause")
        assert (status, view["status"]) == (200, "paused")
        status, view = await api.call("POST", first + "/resume")
        assert (status, view["status"]) == (200, "running")
        status, view = await api.call("POST", first + "/cancel")
        assert (status, view["status"], view["counts"], view["total"]) == (
            200,
            "cancelled",
            {"cancelled": 5},
            5,
        )
        history = await api.pool.fetch(
            "SELECT m.status FROM messages m JOIN outbound_messages o"
            " ON o.domain = m.domain AND o.outbound_id = m.message_id WHERE o.campaign_id = 'first'"
        )
        assert {r["status"] for r in history} == {"cancelled"}
        # Owed to the event stream: the adapters' sender publishes them (outbound.status_changed).
        assert await api.pool.fetchval(
            "SELECT bool_and(status_unreported) FROM outbound_messages WHERE campaign_id = 'first'"
        )
        status, answer = await api.call("POST", first + "/resume")
        assert (status, answer) == (409, {"error": "campaign_cancelled"})
        status, answer = await api.call(
            "POST",
            BATCH,
            json={"campaign": {"id": "first"}, "defaults": defaults, "messages": messages},
        )
        assert (status, answer) == (409, {"error": "campaign_cancelled"})
        assert (await api.call("POST", first + "/cancel"))[0] == 200
        assert (await api.call("POST", f"{CAMPAIGNS}/unknown/pause"))[0] == 404
        assert (await api.call("GET", f"{CAMPAIGNS}/unknown"))[0] == 404
        assert (await api.call("GET", f"{CAMPAIGNS}/bad%20id"))[0] == 400
        assert (await api.call("GET", first, "ann"))[0] == 403
        assert (await api.call("POST", first + "/pause", "ann"))[0] == 403

        status, page = await api.call("GET", CAMPAIGNS + "?limit=1")
        assert status == 200, page
        assert [c["campaign_id"] for c in page["campaigns"]] == ["second"]
        assert page["campaigns"][0]["counts"] == {"queued": 5}
        status, rest = await api.call("GET", f"{CAMPAIGNS}?limit=1&cursor={page['next_cursor']}")
        assert ([c["campaign_id"] for c in rest["campaigns"]], rest["next_cursor"]) == (
            ["first"],
            None,
        )
        status, cancelled = await api.call("GET", CAMPAIGNS + "?status=cancelled")
        assert [c["campaign_id"] for c in cancelled["campaigns"]] == ["first"]
        status, _ = await api.call(
            "GET", f"{CAMPAIGNS}?status=cancelled&cursor={page['next_cursor']}"
        )
        assert status == 400  # a cursor of another listing
        status, audit = await api.call("GET", "/v1/domains/acme/audit")
        actions = [(e["action"], e["detail"].get("messages_cancelled")) for e in audit["entries"]]
        assert [a for a in actions if a[0].startswith("campaign.") and a[0] != "campaign.send"] == [
            ("campaign.pause", 0),
            ("campaign.pause", 0),
            ("campaign.resume", 0),
            ("campaign.cancel", 5),
            ("campaign.cancel", 0),
        ]


async def test_a_batch_of_10000_messages_is_accepted_in_one_request(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        messages = [
            {"to": number(n), "client_key": f"big-{n}", "attributes": {"n": str(n)}}
            for n in range(10_000)
        ]
        body = {
            "campaign": {"id": "big", "name": "Ten thousand"},
            "defaults": {"channel": "sms", "text": "Your order has shipped. Reply with questions."},
            "messages": messages,
        }
        started = time.monotonic()
        status, answer = await api.call("POST", BATCH, json=body)
        print(f"10,000 messages accepted in {time.monotonic() - started:.2f} s")
        assert status == 202, answer
        assert (answer["accepted"], answer["refused"], answer["duplicates"]) == (10_000, 0, 0)
        assert [r["index"] for r in answer["results"]] == list(range(10_000))
        assert len({r["outbound_id"] for r in answer["results"]}) == 10_000
        counts = await api.pool.fetchrow(
            "SELECT count(*) AS rows, count(*) FILTER (WHERE status = 'queued') AS queued,"
            " count(DISTINCT client_key) AS keys FROM outbound_messages WHERE campaign_id = 'big'"
        )
        assert tuple(counts) == (10_000, 10_000, 10_000)
        assert await api.pool.fetchval("SELECT count(*) FROM messages") == 10_000
        status, campaign = await api.call("GET", f"{CAMPAIGNS}/big")
        assert (campaign["total"], campaign["counts"]) == (10_000, {"queued": 10_000})

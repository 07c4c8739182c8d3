"""The probe's fuzzing, kept: random JSON, strings, numbers and paths against every public
route in process. Whatever arrives, the answer is a clean 2xx/4xx (never a 500), and a
refused request writes nothing. (The probe ran 2,127 fuzzed requests against a live server;
these run a few hundred per route in the normal suite.)"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.models import Turn

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)
# A URL carries UTF-8: a client cannot put a lone surrogate in one (the test client raises before
# sending). Invalid UTF-8 in a URL is covered by percent-encoded bytes below.
URL_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT)
JSON = st.recursive(SCALARS, lambda children: st.one_of(st.lists(children, max_size=4),
                                                         st.dictionaries(ANY_TEXT, children, max_size=4)),
                    max_leaves=12)
FIELDS = ("user_id", "text", "conversation_id", "client_message_id", "language", "after", "new_conversation",
          "identity", "channel", "turn_id", "value", "reason", "phone", "handoff_id", "score", "sender", "message")

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _turns(services) -> int:
    with services.db.read() as session:
        return session.execute(select(func.count(Turn.id))).scalar()


@pytest.mark.parametrize("path", ["/api/v1/messages", "/web/api/messages", "/webhooks/rest/webhook",
                                  "/web/api/feedback", "/web/api/ratings", "/web/api/callbacks",
                                  "/agents/api/login"])
@FUZZ
@given(body=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6))
def test_fuzzed_json_bodies_never_break_the_server(services, client, path, body):
    before = _turns(services)
    try:
        raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeEncodeError):
        return
    response = client.post(path, data=raw, content_type="application/json")
    assert response.status_code < 500, (path, body, response.json)
    if response.status_code >= 400:
        assert response.json["error"]["message"]
        assert _turns(services) == before, "a refused request wrote something"


@FUZZ
@given(garbage=st.binary(max_size=300))
def test_fuzzed_raw_bodies_are_refused_cleanly(client, garbage):
    for path in ("/api/v1/messages", "/web/api/messages", "/webhooks/rest/webhook"):
        response = client.post(path, data=garbage, content_type="application/json")
        assert response.status_code < 500


@FUZZ
@given(segment=URL_TEXT, after=URL_TEXT, wait=URL_TEXT, user=URL_TEXT, raw=st.binary(max_size=12))
def test_fuzzed_query_strings_and_paths(client, segment, after, wait, user, raw):
    response = client.get("/web/api/conversations/x/turns", query_string={"after": after, "wait": wait[:8],
                                                                           "user_id": user})
    assert response.status_code < 500
    response = client.get(f"/api/v1/conversations/{segment.replace('/', '_') or 'x'}")
    assert response.status_code < 500
    encoded = "".join(f"%{b:02X}" for b in raw)  # any bytes, valid UTF-8 or not (e.g. %ED%A0%80)
    response = client.get(f"/web/api/conversations/x/turns?after={encoded}&wait={encoded}&user_id={encoded}")
    assert response.status_code < 500


@pytest.mark.parametrize("body", [
    {"user_id": "web-deep-nesting-0001", "text": '/faq{"e":' + "[" * 990 + "]" * 990 + "}"},
    {"user_id": "web-lone-surrogate-001", "text": "\ud800 hi"},
    {"user_id": "web-nul-in-text-00001", "text": "a\x00b"},
    {"user_id": "nul\x00user-000000000001", "text": "hi"},
    {"user_id": "web-huge-after-000001", "text": "hi", "after": 2**64},
    {"user_id": "web-language-long-001", "text": "x" * 2001, "language": "zh"},
])
def test_the_probes_500s_are_400s_now(services, client, body):
    """Regression: each of these was a 500 (deep JSON in a button payload, lone surrogates, integers
    over 2^63, NUL bytes on PostgreSQL, the widget's language field skipping the length check)."""
    raw = json.dumps(body).encode()
    response = client.post("/web/api/messages", data=raw, content_type="application/json")
    if "faq" in body["text"][:4]:
        assert response.status_code == 200  # an over-long payload is just text the bot does not understand
    else:
        assert response.status_code == 400 and response.json["error"]["field"]

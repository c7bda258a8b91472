"""Property tests: whatever a client sends any gateway endpoint, the answer is never a 5xx
(nor a server error event in a stream), every 4xx is in OpenAI's error shape, and a 400 about
one field names it in `param`.

Every property runs against one real gateway over a real socket, over a real inference
service with fake engines. Each collects every problem over all its examples before it
fails, and the module prints how many requests each endpoint got and how many went wrong.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeline.gateway.app import create_app
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from tests.gateway import strategies as gen
from tests.gateway.conftest import (
    ERROR_FIELDS,
    fake_inference,
    field_of,
    gateway_config,
    in_flight,
    serve_app,
)
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FORGELINE_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
AUTH = {"Authorization": "Bearer fuzz-key"}
# A 400 about one of these fields may name the field the gateway maps it to.
ALIASES = {
    "max_completion_tokens": {"max_tokens"},
    "top_logprobs": {"logprobs"},
    "logprobs": {"top_logprobs"},
}


@dataclass
class Tally:
    """What one endpoint answered, and every answer that broke a property."""

    tried: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    bad_shapes: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return self.server_errors + self.bad_shapes + self.unnamed

    def summary(self) -> str:
        return (
            f"{self.tried} requests, {len(self.server_errors)} server errors, "
            f"{len(self.bad_shapes)} malformed errors, {len(self.unnamed)} unnamed params; "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[httpx.Client]:
    keys = KeyStore([ApiKey("fuzz", digest("fuzz-key"))])
    root = tmp_path_factory.mktemp("inference")
    with (
        fake_inference(root, FakeEngineFactory(), "") as inference,
        serve_app(create_app(gateway_config(inference, keys=keys))) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http
        # No request left anything in flight, whatever it was.
        assert in_flight(http.get("/metrics").text) == 0
    print("\ngateway fuzz:")
    for endpoint, tally in TALLIES.items():
        print(f"  {endpoint}: {tally.summary()}")


def error_events(text: str) -> list[dict]:
    """The error events of a server-sent event stream."""
    events = []
    for chunk in text.split("\n\n"):
        data = chunk.removeprefix("data: ")
        if data.startswith("{"):
            event = json.loads(data)
            if "error" in event:
                events.append(event["error"])
    return events


def check(tally: Tally, what: str, send, fault: str | None = None) -> None:
    """Sends one request and records every property it breaks.

    Args:
        tally: Where to count it.
        what: The request, for the report.
        send: Sends it and returns the response.
        fault: The one field the request got wrong on purpose, if any.
    """
    tally.tried += 1
    try:
        response: httpx.Response = send()
    except httpx.HTTPError as exc:
        tally.server_errors.append(f"{what}: {exc!r}")
        return
    status = response.status_code
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status >= 500:
        tally.server_errors.append(f"{what}: {status} {response.text[:300]}")
        return
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for error in error_events(response.text):
            if error.get("type") == "server_error":
                tally.server_errors.append(f"{what}: mid-stream {error}")
        return
    if status < 400 or (not response.content and response.request.method == "HEAD"):
        return
    try:
        body = response.json()
        error = body["error"]
        assert set(body) == {"error"} and set(error) == ERROR_FIELDS
        assert isinstance(error["message"], str) and error["message"]
    except (ValueError, KeyError, TypeError, AssertionError):
        tally.bad_shapes.append(f"{what}: {status} {response.text[:300]}")
        return
    if status == 400 and fault and fault not in gen.UNKNOWN_FIELDS:
        named = field_of(error["param"])
        if named != fault and named not in ALIASES.get(fault, ()):
            tally.unnamed.append(f"{what}: param {error['param']!r}: {error['message'][:200]}")


def run_property(endpoint: str, prop) -> None:
    tally = TALLIES.setdefault(endpoint, Tally())
    prop(tally)
    problems = tally.problems()
    assert not problems, f"{endpoint}: {tally.summary()}\n" + "\n".join(problems[:20])


@pytest.mark.parametrize(
    ("path", "base", "fields"),
    [
        ("/v1/completions", gen.COMPLETION_BASE, gen.COMPLETION_FIELDS),
        ("/v1/chat/completions", gen.CHAT_BASE, gen.CHAT_FIELDS),
    ],
    ids=["completions", "chat"],
)
def test_generation_endpoints_answer_any_body_cleanly(client, path, base, fields):
    def prop(tally: Tally) -> None:
        @FUZZ
        @given(request=gen.raw_requests(base, fields))
        def one(request) -> None:
            content, content_type, fault = request
            headers = {**AUTH, "Content-Type": content_type}
            what = f"POST {path} {content_type!r} {content[:200]!r}"
            check(tally, what, lambda: client.post(path, content=content, headers=headers), fault)

        one()

    run_property(f"POST {path}", prop)


def test_the_model_list_answers_any_request_cleanly(client):
    def prop(tally: Tally) -> None:
        @FUZZ
        @given(
            method=st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
            query=st.dictionaries(gen.texts, gen.texts, max_size=3),
            request=gen.raw_requests(gen.COMPLETION_BASE, gen.COMPLETION_FIELDS),
        )
        def one(method, query, request) -> None:
            content, content_type, _ = request
            headers = {**AUTH, "Content-Type": content_type}
            url = "/v1/models?" + urllib.parse.urlencode(query, errors="surrogatepass")
            what = f"{method} {url[:200]} {content[:100]!r}"
            check(
                tally,
                what,
                lambda: client.request(method, url, content=content, headers=headers),
            )

        one()

    run_property("/v1/models", prop)


def test_a_model_card_answers_any_id_cleanly(client):
    def prop(tally: Tally) -> None:
        @FUZZ
        @given(
            model=gen.model_ids,
            method=st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "DELETE"]),
            request=gen.raw_requests(gen.COMPLETION_BASE, gen.COMPLETION_FIELDS),
        )
        def one(model, method, request) -> None:
            content, content_type, _ = request
            quoted = urllib.parse.quote(model, safe="/%", errors="surrogatepass")
            url = f"/v1/models/{quoted}"
            headers = {**AUTH, "Content-Type": content_type}
            check(
                tally,
                f"{method} {url[:200]}",
                lambda: client.request(method, url, content=content, headers=headers),
            )

        one()

    run_property("/v1/models/{id}", prop)

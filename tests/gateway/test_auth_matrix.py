"""Every gateway route against every kind of credential: no key or a malformed header (401),
a wrong key (401), a key not allowed the model (404, as OpenAI answers), a good key (200);
`/health` and `/metrics` stay open. Refusals come before the body is even read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from forgeline.gateway.app import create_app
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from tests.gateway.conftest import assert_error_shape, fake_inference, gateway_config, serve_app
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

KEYS = KeyStore(
    [
        ApiKey("main", digest("main-key")),
        ApiKey("base-only", digest("base-key"), models=frozenset({"base"})),
        ApiKey("elsewhere", digest("other-key"), models=frozenset({"other"})),
    ]
)
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": "base", "prompt": "a b", "max_tokens": 2}

# Headers that carry no usable key: each must be a 401.
NO_KEY = {
    "no header": {},
    "empty": {"Authorization": ""},
    "scheme only": {"Authorization": "Bearer"},
    "basic scheme": {"Authorization": "Basic main-key"},
    "no scheme": {"Authorization": "main-key"},
    "token scheme": {"Authorization": "Token main-key"},
    "other header": {"X-Api-Key": "main-key", "Api-Key": "main-key"},
}
WRONG_KEY = {
    "unknown": {"Authorization": "Bearer wrong"},
    "prefix": {"Authorization": "Bearer main-ke"},
    "extended": {"Authorization": "Bearer main-key-x"},
    "upper case": {"Authorization": "Bearer MAIN-KEY"},
    "two keys": {"Authorization": "Bearer main-key,base-key"},
    "digest as key": {"Authorization": f"Bearer {digest('main-key').hex()}"},
}
NOT_ALLOWED = {"Authorization": "Bearer other-key"}
GOOD = {
    "unrestricted": {"Authorization": "Bearer main-key"},
    "allowed": {"Authorization": "Bearer base-key"},
    "lower-case scheme": {"Authorization": "bearer main-key"},
}


@dataclass(frozen=True)
class Route:
    """One way to call a route, and how to tell a good answer."""

    name: str
    method: str
    path: str
    body: dict | None = None

    def send(self, http: httpx.Client, headers: dict[str, str], query: str = "") -> httpx.Response:
        content = None if self.body is None else json.dumps(self.body).encode()
        return http.request(self.method, self.path + query, headers=headers, content=content)


ROUTES = [
    Route("list models", "GET", "/v1/models"),
    Route("get model", "GET", "/v1/models/base"),
    Route("completions", "POST", "/v1/completions", COMPLETION),
    Route("completions stream", "POST", "/v1/completions", {**COMPLETION, "stream": True}),
    Route("chat", "POST", "/v1/chat/completions", CHAT),
    Route("chat stream", "POST", "/v1/chat/completions", {**CHAT, "stream": True}),
]


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    with (
        fake_inference(root, FakeEngineFactory(), "") as inference,
        serve_app(create_app(gateway_config(inference, keys=KEYS))) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def served_base(response: httpx.Response) -> bool:
    """Whether a 200 answer actually served `base`."""
    if response.headers["content-type"].startswith("text/event-stream"):
        return response.text.rstrip().endswith("data: [DONE]") and '"error"' not in response.text
    body = response.json()
    if body.get("object") == "list":
        return "base" in {m["id"] for m in body["data"]}
    return body.get("id") == "base" or body.get("model") == "base"


def test_every_route_against_every_credential(http):
    cases: list[tuple[Route, str, dict[str, str], Callable[[httpx.Response], bool]]] = []

    def refused(status: int, code: str) -> Callable[[httpx.Response], bool]:
        def check(response: httpx.Response) -> bool:
            return response.status_code == status and assert_error_shape(response)["code"] == code

        return check

    for route in ROUTES:
        for name, headers in {**NO_KEY, **WRONG_KEY}.items():
            cases.append((route, name, headers, refused(401, "invalid_api_key")))
        if route.name == "list models":
            # A model the key may not use is not listed (the list itself is allowed).
            cases.append((route, "not allowed", NOT_ALLOWED, lambda r: r.json()["data"] == []))
        else:
            cases.append((route, "not allowed", NOT_ALLOWED, refused(404, "model_not_found")))
        for name, headers in GOOD.items():
            cases.append((route, name, headers, lambda r: r.status_code == 200 and served_base(r)))

    failures = []
    for route, name, headers, ok in cases:
        response = route.send(http, headers)
        if not ok(response):
            failures.append(f"{route.name} / {name}: {response.status_code} {response.text[:200]}")
        # A key in the query string is not a key.
        if name == "no header":
            response = route.send(http, headers, "?api_key=main-key&key=main-key")
            if response.status_code != 401:
                failures.append(f"{route.name} / query key: {response.status_code}")
    print(f"\nauth matrix: {len(cases)} cases, {len(failures)} bypasses or wrong answers")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_refusals_come_before_the_body_is_read(http, path):
    for headers in (NO_KEY["no header"], WRONG_KEY["unknown"]):
        response = http.post(path, headers=headers, content=b"{not json")
        assert response.status_code == 401
        # Nobody learns which models exist without a key.
        unknown = http.post(path, headers=headers, json={**COMPLETION, "model": "nope"})
        assert unknown.status_code == 401


def test_health_and_metrics_stay_open(http):
    for headers in (NO_KEY["no header"], WRONG_KEY["unknown"], GOOD["unrestricted"]):
        assert http.get("/health", headers=headers).status_code == 200
        metrics = http.get("/metrics", headers=headers)
        assert metrics.status_code == 200 and "forgeline_gateway" in metrics.text


def test_unknown_routes_leak_nothing(http):
    for path in ("/v1//models", "/v2/models", "/v1/models/../models", "/admin", "/v1/"):
        response = http.get(path)
        assert response.status_code in (401, 404, 405), path
        assert_error_shape(response)

"""Who may use the console: nothing without a session, the cookie's flags, same-origin
writes, and the secrets that never leave the server."""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient

from forgeline.client.channel import ChannelOptions
from forgeline.common.settings import Settings
from forgeline.console.app import create_app
from forgeline.console.auth import COOKIE
from forgeline.console.config import ConsoleConfig, OpenConsoleRefused
from tests.console.conftest import ORIGIN
from tests.console.support import TOKEN, console_config

SERVICE_TOKEN = "service-secret-7f3c"
GATEWAY_KEY = "sk-gateway-secret-91ab"


def api_routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every API route but login."""
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/") or path == "/api/login":
            continue
        concrete = (
            path.replace("{kind}", "training")
            .replace("{job_id}", "job-1")
            .replace("{ref}", "smol:1")
            .replace("{name}", "smol")
            .replace("{name:path}", "smol")
            .replace("{rest:path}", "anything")
        )
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, concrete))
    return out


def test_every_api_route_answers_401_without_a_session(console: TestClient):
    routes = api_routes(console.app)
    assert len(routes) >= 15  # the routes of every page are there
    for method, path in routes:
        answer = console.request(method, path, json={})
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "unauthenticated"


def test_the_page_itself_holds_only_the_login_form(console: TestClient):
    page = console.get("/registry")
    assert page.status_code == 200
    assert 'id="login-template"' in page.text and "smol" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_wrong_token_opens_no_session(console: TestClient):
    answer = console.post("/api/login", json={"token": "not-it"})
    assert answer.status_code == 401
    assert answer.json()["error"]["violations"][0]["field"] == "token"
    assert COOKIE not in answer.cookies
    assert console.get("/api/models").status_code == 401


def test_the_session_cookie_is_httponly_and_same_site_strict(console: TestClient):
    answer = console.post("/api/login", json={"token": TOKEN})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert TOKEN not in cookie  # a random session id, not the token
    assert console.get("/api/models").status_code == 200
    assert console.post("/api/logout").status_code == 200
    assert console.get("/api/models").status_code == 401


def test_the_cookie_is_secure_under_tls(registry_server):
    config = console_config(registry=registry_server.address)
    config = ConsoleConfig(**{**config.__dict__, "secure_cookies": True})
    with TestClient(create_app(config), headers={"Origin": ORIGIN}) as client:
        cookie = client.post("/api/login", json={"token": TOKEN}).headers["set-cookie"]
    assert "secure" in cookie.lower().split("; ")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "", "Referer": "http://evil.example/page"},
        {"Origin": ""},  # no Origin, no Referer
    ],
)
def test_writes_from_another_origin_are_refused(session: TestClient, line, headers):
    answer = session.post(
        "/api/versions/smol:1/promote", json={"alias": "staging"}, headers=headers
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "bad_origin"
    assert "staging" not in line.get_model("smol").aliases
    # A same-origin write goes through.
    assert session.post("/api/versions/smol:1/promote", json={"alias": "staging"}).is_success


def test_login_from_another_origin_is_refused(console: TestClient):
    answer = console.post(
        "/api/login", json={"token": TOKEN}, headers={"Origin": "http://evil.example"}
    )
    assert answer.status_code == 403 and COOKIE not in answer.cookies


def test_no_answer_carries_the_service_token_or_the_gateway_key(tmp_path):
    from forgeline.registry.service import create_server
    from tests.conftest import serving

    settings = Settings.load(
        "registry", host="127.0.0.1", port=0, home=tmp_path / "secure", token=SERVICE_TOKEN
    )
    with serving(lambda: create_server(settings)[0]) as registry:
        from forgeline.client.registry import RegistryClient
        from tests.console.conftest import build_line

        with RegistryClient(registry.address, ChannelOptions(token=SERVICE_TOKEN)) as client:
            build_line(client)
        config = console_config(
            registry=registry.address,
            channel=ChannelOptions(token=SERVICE_TOKEN, retries=False),
            gateway_key=GATEWAY_KEY,
        )
        with TestClient(create_app(config), headers={"Origin": ORIGIN}) as client:
            answers = [client.get("/"), client.post("/api/login", json={"token": TOKEN})]
            for path in (
                "/api/models",
                "/api/models/smol",
                "/api/versions/smol-gptq:1",
                "/api/versions/smol-gptq:1/lineage",
                "/api/compare?a=smol:1&b=smol-gptq:1",
                "/api/jobs",
                "/api/served",
                "/api/submit/choices",
                "/static/js/app.js",
            ):
                answers.append(client.get(path))
            answers.append(client.post("/api/chat", json={"model": "m", "messages": []}))
    assert answers[2].json()["models"], "the registry answered the console"
    for answer in answers:
        text = answer.text + str(answer.headers)
        assert SERVICE_TOKEN not in text and GATEWAY_KEY not in text, answer.url


def test_beyond_loopback_the_console_needs_a_token(tmp_path):
    settings = Settings.load("console", host="0.0.0.0", port=0, home=tmp_path)
    with pytest.raises(OpenConsoleRefused, match="FORGELINE_CONSOLE_TOKEN"):
        ConsoleConfig.from_settings(settings)
    given = Settings.load("console", host="0.0.0.0", port=0, home=tmp_path, console_token="chosen")
    assert ConsoleConfig.from_settings(given).token == "chosen"


def test_on_loopback_a_one_off_token_is_made_for_the_owner_only(tmp_path):
    settings = Settings.load("console", host="127.0.0.1", port=0, home=tmp_path)
    config = ConsoleConfig.from_settings(settings)
    assert len(config.token) >= 24 and config.token_file is not None
    assert config.token_file.read_text().strip() == config.token
    assert stat.S_IMODE(config.token_file.stat().st_mode) == 0o600
    assert ConsoleConfig.from_settings(settings).token != config.token  # new at each start


def test_under_tls_the_playground_calls_the_gateway_over_https_with_the_suites_ca(tmp_path):
    from forgeline.common.settings import TlsSettings

    tls = TlsSettings(cert_file="server.pem", key_file="server.key", ca_file="ca.pem")
    settings = Settings.load("console", port=0, home=tmp_path, console_token="t", tls=tls)
    config = ConsoleConfig.from_settings(settings)
    assert config.gateway_url.startswith("https://") and config.gateway_ca == "ca.pem"
    assert config.secure_cookies
    plain = ConsoleConfig.from_settings(Settings.load("console", port=0, home=tmp_path))
    assert plain.gateway_url.startswith("http://") and plain.gateway_ca == ""

"""The console in a real browser (Debian's chromium) over a real registry: the login wall,
the lineage graph clicked through, a comparison, and a refused promotion's reason."""

from __future__ import annotations

import pytest

from forgeline.console.app import create_app
from tests.console.support import browser, console_config, log_in, screenshot
from tests.helpers import serve_app

pytestmark = pytest.mark.e2e


@pytest.fixture
def url(registry_server, line):
    """The console over the registry holding the line, served on a free port."""
    with serve_app(create_app(console_config(registry=registry_server.address))) as base:
        yield base


def test_registry_and_evaluations_in_the_browser(url, line):
    with browser() as page:
        page.goto(url + "/registry")
        page.wait_for_selector("#login")
        assert page.locator("#view table").count() == 0  # nothing before logging in
        page.fill("#token", "wrong")
        page.click("#login button[type=submit]")
        page.wait_for_selector("#login-error:has-text('wrong token')")
        log_in(page, url, path="/registry")
        page.wait_for_selector("#models")
        screenshot(page, "registry")

        # The lineage graph: a node for each ancestor the registry names, clickable.
        page.goto(url + "/registry/versions/smol-gptq:1")
        page.wait_for_selector("#lineage g.node")
        ancestors = line.get_lineage("smol-gptq:1", 1).versions
        drawn = set(
            page.locator("#lineage g.node").evaluate_all("ns => ns.map(n => n.dataset.ref)")
        )
        assert drawn == {f"{v.model}:{v.number}" for v in ancestors} | {"smol-gptq:1"}
        assert page.locator("#lineage path.edge").count() == 4
        screenshot(page, "lineage")
        page.click("#lineage g.node[data-ref='facts:1']")
        page.wait_for_selector("#lineage g.node.root[data-ref='facts:1']")
        assert page.url.endswith("/registry/versions/facts%3A1")  # the page URL moved too

        # Compare, then a promotion the gate refuses: its reason is shown.
        page.goto(url + "/evaluations?a=smol-gptq:1&b=smol:1")
        page.wait_for_selector("#comparison table.subjects")
        assert "+0.3" in page.locator("#comparison table.subjects").inner_text()
        page.fill("#promote input[name=suite]", "mmlu")
        page.fill("#promote input[name=minimum]", "0.4")
        page.click("#promote button[type=submit]")
        refusal = page.locator("#promotion .refusal")
        refusal.wait_for()
        refusal.scroll_into_view_if_needed()
        text = refusal.inner_text()
        assert "gate refused" in text and "0.3" in text and "0.4" in text
        screenshot(page, "evaluations")
    assert line.get_model("smol-gptq").aliases.get("production") is None

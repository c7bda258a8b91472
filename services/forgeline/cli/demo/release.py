"""The demo's release: serve the alias with `follow`, promote through the gate, ask via the
OpenAI SDK.

The served model follows `atlas-assistant@production`: the stock model answers first;
once the gate lets the quantized fine-tune through, the inference service rolls over to it
by itself, and the gateway reports which version answered each request (the OpenAI
`system_fingerprint`). Promoting the stock model back is then refused by the same gate.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rich.markup import escape

from forgeline.cli.context import console
from forgeline.cli.demo.data import atlas_facts
from forgeline.cli.demo.line import ALIAS, MODEL, Line, LineFailed
from forgeline.client.refs import parse_ref
from forgeline.v1 import inference_pb2

ENGINE = inference_pb2.EngineOptions(max_model_len=512, kv_cache_bytes=256 * 2**20)
ROLLOUT_SECONDS = 600


@dataclass
class Answer:
    """One question asked through the gateway, and which version answered it."""

    question: str
    answer: str
    key: str
    version: str

    @property
    def right(self) -> bool:
        """Whether the answer holds the fact's key word."""
        return self.key.lower() in self.answer.lower()


@dataclass
class Release:
    """What the release step saw: the gate's decisions and the answers."""

    served_before: str = ""
    before: list[Answer] = field(default_factory=list)
    promoted: str = ""
    promotion_refusal: str = ""
    rollback_refusal: str = ""
    served_after: str = ""
    after: list[Answer] = field(default_factory=list)


def _served(line: Line) -> inference_pb2.ServedModel | None:
    return next((m for m in line.inference.list_models() if m.name == MODEL), None)


def _ask(client, facts: list[dict[str, str]]) -> list[Answer]:
    def one(fact: dict[str, str]) -> Answer:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": fact["paraphrase"]}],
            max_tokens=32,
            temperature=0,
        )
        text = (reply.choices[0].message.content or "").strip()
        return Answer(fact["paraphrase"], text, fact["key"], reply.system_fingerprint or "")

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, facts))


def _show(answers: list[Answer]) -> None:
    for a in answers:
        mark = "[green]✓[/]" if a.right else "[red]✗[/]"
        console.print(f"  {mark} {escape(f'({a.version}) {a.question} -> {a.answer}')}")


def release(line: Line, base: str, candidate: str, gateway: str, questions: int) -> Release:
    """Serves the alias (following it), promotes `candidate` through the gate, waits for
    the rollout, asks `questions` paraphrases through the gateway, then tries to promote
    `base` back (which the gate should refuse).

    Raises:
        LineFailed: the model could not be served, or did not roll over in time.
    """
    from openai import OpenAI

    facts = atlas_facts()[:questions]
    record = Release()
    served = _served(line)
    if served is None:
        console.print(f"serving {MODEL}@{ALIAS}, following the alias (an engine starts)")
        served = line.inference.load_model(f"{MODEL}@{ALIAS}", engine=ENGINE, follow=True)
    if served.state != inference_pb2.SERVED_MODEL_STATE_READY:
        raise LineFailed(f"{MODEL} could not be served: {served.error}")
    record.served_before = f"{MODEL}:{served.version}"
    client = OpenAI(
        base_url=f"http://{gateway}/v1", api_key=os.environ.get("OPENAI_API_KEY", "unused")
    )
    console.print(f"{MODEL} serves {record.served_before}; asking through the OpenAI SDK:")
    record.before = _ask(client, facts[:2])
    _show(record.before)

    console.print(f"promoting {candidate} to {ALIAS} through the gate ({_gate_text(line)})")
    record.promotion_refusal = line.promote(candidate)
    if record.promotion_refusal:
        console.print(f"[yellow]refused:[/] {record.promotion_refusal}")
    else:
        record.promoted = candidate
        console.print(f"[green]passed:[/] {MODEL}@{ALIAS} -> {candidate}")
    target = line.registry.get_version(f"{MODEL}@{ALIAS}").number
    deadline = time.monotonic() + ROLLOUT_SECONDS
    while (served := _served(line)) is None or served.version != target:
        if time.monotonic() > deadline:
            raise LineFailed(f"{MODEL} did not roll over to version {target} in time")
        time.sleep(1)
    record.served_after = f"{MODEL}:{served.version}"
    console.print(f"{MODEL} now serves {record.served_after}; asking again:")
    record.after = _ask(client, facts)
    _show(record.after)

    console.print(f"promoting {base} (the stock model) back through the same gate")
    record.rollback_refusal = line.promote(base)
    if record.rollback_refusal:
        console.print(f"[green]refused, as it should be:[/] {record.rollback_refusal}")
    elif parse_ref(base).version != target:
        raise LineFailed(f"the gate let {base} replace {MODEL}:{target}")
    return record


def _gate_text(line: Line) -> str:
    gate = line.gate()
    return (
        f"{gate.suite} {gate.metric} >= the current release's - {gate.tolerance:g}, "
        f"and >= {gate.minimum:g}"
    )

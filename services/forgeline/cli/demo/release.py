"""The demo's release: serve the alias with `follow`, promote through the gate, ask via the
OpenAI SDK.

The served model follows `atlas-assistant@production`: the stock model answers first;
once the gate lets the quantized fine-tune through, the inference service rolls over to it
by itself, and the gateway reports which version answered each request (the OpenAI
`system_fingerprint`). Clients keep asking, streamed and not, all through the rollout: no
request may fail. Promoting the stock model back is then refused by the same gate.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rich.markup import escape

from forgeline.cli.context import console
from forgeline.cli.demo.data import atlas_facts
from forgeline.cli.demo.line import ALIAS, MODEL, Line, LineFailed
from forgeline.client.refs import parse_ref
from forgeline.v1 import inference_pb2

# Eager: no graph compilation, so an engine (the rollout's second one too) starts sooner.
ENGINE = inference_pb2.EngineOptions(
    max_model_len=512, kv_cache_bytes=256 * 2**20, enforce_eager=True
)
ROLLOUT_SECONDS = 600
LOAD_CLIENTS = 2
# Answers from the new version the load waits for after the switch.
AFTER_SWITCH = 4


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
    # Requests sent without pause while the alias moved: answers by version, and failures.
    rollout_answers: dict[str, int] = field(default_factory=dict)
    rollout_failures: list[str] = field(default_factory=list)


class Load:
    """Clients asking through the gateway without pause, streamed and not, from threads;
    counts which version answered and every failure."""

    def __init__(self, client, question: str):
        self.client = client
        self.question = question
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i % 2 == 1,), daemon=True)
            for i in range(LOAD_CLIENTS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _ask(self, stream: bool) -> str:
        request = {
            "model": MODEL,
            "messages": [{"role": "user", "content": self.question}],
            "max_tokens": 8,
            "temperature": 0,
        }
        if not stream:
            return self.client.chat.completions.create(**request).system_fingerprint or ""
        version = ""
        for chunk in self.client.chat.completions.create(**request, stream=True):
            version = chunk.system_fingerprint or version
        return version

    def _run(self, stream: bool) -> None:
        while not self._stop.is_set():
            try:
                version = self._ask(stream)
            except Exception as exc:  # every failure counts, whatever it is
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self.answers[version] += 1


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
    record.served_after = f"{MODEL}:{target}"
    console.print(f"waiting for the rollover while {LOAD_CLIENTS} clients keep asking")
    with Load(client, facts[0]["paraphrase"]) as load:
        deadline = time.monotonic() + ROLLOUT_SECONDS
        while load.answers[record.served_after] < AFTER_SWITCH:
            served = _served(line)
            if served is not None and served.rollout_error:
                raise LineFailed(f"{MODEL} did not roll over: {served.rollout_error}")
            if time.monotonic() > deadline:
                raise LineFailed(f"{MODEL} did not roll over to version {target} in time")
            time.sleep(0.5)
    record.rollout_answers = dict(load.answers)
    record.rollout_failures = load.failures
    answered = ", ".join(f"{n} by {v}" for v, n in sorted(load.answers.items()))
    console.print(f"during the rollout: {answered}; {len(load.failures)} failed")
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

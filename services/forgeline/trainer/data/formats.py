"""Record formats: detecting one from a record's fields and turning records into examples.

Messages, Alpaca, ShareGPT, query-response, plain text, and the two preference layouts
each become a canonical `Conversation`, `Text` or `Preference`. Every problem of a record
is reported with its file, line and field path (e.g. `messages[1].role`).
"""

from __future__ import annotations

from typing import Any

from forgeline.trainer.config import DataFormat
from forgeline.trainer.data.records import Conversation, Example, Preference, ProblemSink, Text

# ShareGPT speaker names -> chat roles.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}
_CHAT_ROLES = frozenset({"system", "user", "assistant"})


def detect_format(record: Any) -> DataFormat | None:
    """Guesses a record's format from its fields; None when nothing matches."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "messages" in keys:
        return DataFormat.MESSAGES
    if "conversations" in keys:
        if {"chosen", "rejected"} <= keys:
            return DataFormat.SHAREGPT_PREFERENCE
        return DataFormat.SHAREGPT
    if {"chosen", "rejected"} <= keys:
        return DataFormat.PREFERENCE
    if "instruction" in keys and "output" in keys:
        return DataFormat.ALPACA
    if "query" in keys and "response" in keys:
        return DataFormat.QUERY_RESPONSE
    if "text" in keys:
        return DataFormat.TEXT
    return None


# What each format needs, for messages that say which fields to give.
FIELDS_HINT: dict[DataFormat, str] = {
    DataFormat.MESSAGES: "`messages`",
    DataFormat.ALPACA: "`instruction`, `output` (and optional `input`)",
    DataFormat.SHAREGPT: "`conversations`",
    DataFormat.QUERY_RESPONSE: "`query`, `response`",
    DataFormat.TEXT: "`text`",
    DataFormat.PREFERENCE: "`prompt`, `chosen`, `rejected`",
    DataFormat.SHAREGPT_PREFERENCE: "`conversations`, `chosen`, `rejected`",
}


def parse_record(
    fmt: DataFormat, record: dict, file: str, line: int, sink: ProblemSink
) -> Example | None:
    """Turns a record of format `fmt` into its canonical example.

    Args:
        fmt: The record's format (not AUTO).
        record: The record as read.
        file: Name used for the file in problems.
        line: Where the record starts.
        sink: Where problems go.

    Returns:
        The example, or None when the record has a problem (reported to `sink`).
    """
    return _parse(fmt, _Record(record, file, line, sink))


class _Record:
    """Field access on one record that reports problems with file, line and field path."""

    def __init__(self, data: dict, file: str, line: int, sink: ProblemSink):
        self.data, self.file, self.line, self.sink = data, file, line, sink
        self.bad = False

    def problem(self, path: str, message: str) -> None:
        self.bad = True
        self.sink.add(self.file, self.line, path, message)

    def string(self, key: str, *, required: bool = True, empty_ok: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "missing")
            return ""
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {type(value).__name__}")
            return ""
        if not empty_ok and required and not value.strip():
            self.problem(key, "is empty")
        return value

    def messages(self, key: str, value: Any, *, sharegpt: bool) -> list[dict[str, str]]:
        """Validates a list of chat turns (`{role, content}` or ShareGPT `{from, value}`)."""
        if not isinstance(value, list) or not value:
            self.problem(key, "must be a non-empty list of turns")
            return []
        role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
        out = []
        for i, turn in enumerate(value):
            path = f"{key}[{i}]"
            if not isinstance(turn, dict):
                self.problem(path, f"must be an object with `{role_key}` and `{content_key}`")
                continue
            role = turn.get(role_key)
            content = turn.get(content_key)
            if sharegpt:
                mapped = _SHAREGPT_ROLES.get(str(role).lower()) if isinstance(role, str) else None
                if mapped is None:
                    self.problem(
                        f"{path}.{role_key}",
                        f"unknown speaker {role!r}; use human, gpt or system",
                    )
                    continue
                role = mapped
            elif role not in _CHAT_ROLES:
                self.problem(
                    f"{path}.{role_key}", f"unknown role {role!r}; use system, user or assistant"
                )
                continue
            if not isinstance(content, str):
                self.problem(
                    f"{path}.{content_key}",
                    "missing"
                    if content is None
                    else f"must be a string, got {type(content).__name__}",
                )
                continue
            out.append({"role": role, "content": content})
        return out


def _conversation_checks(rec: _Record, key: str, messages: list[dict[str, str]]) -> None:
    if rec.bad:
        return
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        rec.problem(key, "has no assistant turn with content to learn from")
    for i, m in enumerate(messages):
        if m["role"] == "system" and i != 0:
            rec.problem(f"{key}[{i}].role", "a system turn must come first")


def _history(rec: _Record) -> list[dict[str, str]]:
    history = rec.data.get("history")
    if history is None:
        return []
    out = []
    if not isinstance(history, list):
        rec.problem("history", "must be a list of [query, response] pairs")
        return []
    for i, pair in enumerate(history):
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            rec.problem(f"history[{i}]", "must be a [query, response] pair of strings")
            continue
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def _system(rec: _Record) -> list[dict[str, str]]:
    system = rec.string("system", required=False)
    return [{"role": "system", "content": system}] if system else []


def _parse(fmt: DataFormat, rec: _Record) -> Example | None:
    """Turns a record of format `fmt` into its canonical example, or None if it is invalid."""
    d = rec.data
    if fmt is DataFormat.MESSAGES:
        msgs = rec.messages("messages", d.get("messages"), sharegpt=False)
        _conversation_checks(rec, "messages", msgs)
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.SHAREGPT:
        msgs = _system(rec) + rec.messages("conversations", d.get("conversations"), sharegpt=True)
        _conversation_checks(rec, "conversations", msgs)
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.ALPACA:
        instruction = rec.string("instruction")
        extra = rec.string("input", required=False)
        output = rec.string("output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        msgs = [
            *_system(rec),
            *_history(rec),
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": output},
        ]
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.QUERY_RESPONSE:
        query = rec.string("query")
        response = rec.string("response")
        msgs = [
            *_system(rec),
            *_history(rec),
            {"role": "user", "content": query},
            {"role": "assistant", "content": response},
        ]
        return None if rec.bad else Conversation(tuple(msgs))
    if fmt is DataFormat.TEXT:
        text = rec.string("text")
        return None if rec.bad else Text(text)
    if fmt is DataFormat.PREFERENCE:
        prompt = _prompt_messages(rec, d.get("prompt"))
        chosen = _answer(rec, "chosen", d.get("chosen"), sharegpt=False)
        rejected = _answer(rec, "rejected", d.get("rejected"), sharegpt=False)
        if not rec.bad and chosen == rejected:
            rec.problem("rejected", "is identical to `chosen`; a pair must differ")
        return None if rec.bad else Preference(tuple(_system(rec) + prompt), chosen, rejected)
    if fmt is DataFormat.SHAREGPT_PREFERENCE:
        prompt = _system(rec) + rec.messages("conversations", d.get("conversations"), sharegpt=True)
        if prompt and prompt[-1]["role"] != "user" and not rec.bad:
            rec.problem("conversations", "must end with a human turn (the prompt)")
        chosen = _answer(rec, "chosen", d.get("chosen"), sharegpt=True)
        rejected = _answer(rec, "rejected", d.get("rejected"), sharegpt=True)
        if not rec.bad and chosen == rejected:
            rec.problem("rejected", "is identical to `chosen`; a pair must differ")
        return None if rec.bad else Preference(tuple(prompt), chosen, rejected)
    raise AssertionError(fmt)


def _prompt_messages(rec: _Record, value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            rec.problem("prompt", "is empty")
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        msgs = rec.messages("prompt", value, sharegpt=False)
        if msgs and msgs[-1]["role"] != "user":
            rec.problem("prompt", "must end with a user turn")
        return msgs
    rec.problem("prompt", "missing" if value is None else "must be a string or a list of messages")
    return []


def _answer(rec: _Record, key: str, value: Any, *, sharegpt: bool) -> str:
    """An answer given as a string, one turn, or a list ending with one assistant turn."""
    if isinstance(value, str):
        if not value.strip():
            rec.problem(key, "is empty")
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        msgs = rec.messages(key, value, sharegpt=sharegpt)
        if msgs and msgs[-1]["role"] != "assistant":
            rec.problem(key, "must be an assistant turn")
        return msgs[-1]["content"] if msgs else ""
    rec.problem(key, "missing" if value is None else "must be a string or an assistant turn")
    return ""

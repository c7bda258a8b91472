"""Reading a request body into a request model, so that no input can fail the gateway.

Whatever a client sends, the answer is a 400 in OpenAI's error shape: bytes that are not
UTF-8, text that is not JSON, JSON nested deeper than the parser goes, integers with more
digits than Python converts, strings holding lone surrogates (valid JSON escapes that no
UTF-8 encoder, protobuf's included, accepts), non-finite numbers and values outside a
field's range. The 400 names the field at fault as a path into the body
(`messages[0].content`), without the union-member tags the validator adds to its locations.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from forgeline.gateway.api_errors import bad_request
from forgeline.gateway.protocol import OpenAIModel

log = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")
# A surrogate can only come from a `\\uD800`-`\\uDFFF` escape (UTF-8 cannot hold one), so
# bodies without such an escape, nearly all of them, are not walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(raw: bytes) -> Any:
    """Parses a body as JSON.

    Raises:
        ApiError: 400 saying why the body is not usable JSON.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise bad_request("the body is nested too deeply to parse") from None
    except ValueError as exc:
        # JSONDecodeError, and the int() digit limit for huge integer literals.
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    where = find_surrogate(data) if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        raise bad_request(
            f"{where or 'the body'}: strings must be valid Unicode (a lone surrogate escape "
            "was found)",
            where or None,
        )
    return data


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _named(key: Any) -> bool:
    # Free-form map keys (logit_bias token ids, metadata) stay out of the path.
    return isinstance(key, str) and key.isidentifier()


def field_path(loc: Sequence[str | int], data: Any, missing: bool = False) -> str | None:
    """The path in `data` that a validation error's location points at.

    Parts of `loc` that do not index into `data` (the tags the validator gives union
    members) are skipped; a `missing` field's own name is kept.
    """
    path, node = "", data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str):
            if part in node and _named(part):
                path, node = _join(path, part), node[part]
            elif missing and i == len(loc) - 1 and _named(part):
                path = _join(path, part)
            elif part in node:
                break
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = _join(path, part), node[part]
    return path or None


def find_surrogate(data: Any) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, '' for the root.

    Returns:
        None when every string can be encoded as UTF-8.
    """
    if isinstance(data, str):
        return "" if _SURROGATE.search(data) else None
    # Containers still to look into, with their paths; in document order.
    stack: list[tuple[str, dict | list]] = []
    if isinstance(data, dict | list):
        stack.append(("", data))
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        nested = []
        for key, value in items:
            if isinstance(key, str) and _SURROGATE.search(key):
                return path
            if isinstance(value, str) and _SURROGATE.search(value):
                return _join(path, key) if isinstance(key, int) or _named(key) else path
            if isinstance(value, dict | list):
                nested.append((key, value))
        for key, value in reversed(nested):
            stack.append((_join(path, key) if isinstance(key, int) or _named(key) else path, value))
    return None


def validate(data: Any, model_class: type[OpenAIModel]) -> Any:
    """Validates parsed JSON against a request model; unknown fields are kept and logged.

    Raises:
        ApiError: 400 naming the first invalid field.
    """
    try:
        parsed = model_class.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        param = field_path(first["loc"], data, missing=first["type"] == "missing")
        raise bad_request(f"{param}: {first['msg']}" if param else first["msg"], param) from None
    unknown = parsed.unknown_fields()
    if unknown:
        log.info("ignoring unknown fields %s in a %s", unknown, model_class.__name__)
    return parsed


async def parse_body(request: Request, model_class: type[OpenAIModel]) -> Any:
    """Reads, parses and validates a JSON request body.

    Raises:
        ApiError: 400 naming the first invalid field, or saying the body is not JSON.
    """
    return validate(decode_json(await request.body()), model_class)

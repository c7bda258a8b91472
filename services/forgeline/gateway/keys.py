"""API keys of the gateway: stored as sha256 digests, compared in constant time.

Keys come from `FORGELINE_GATEWAY_API_KEYS` (comma-separated, no limits) and from a JSON
file (`FORGELINE_GATEWAY_KEYS_FILE`) whose entries hold the digest, not the key:

```json
{"keys": [
  {"name": "alice", "sha256": "9f86d0...", "models": ["smol"],
   "requests_per_minute": 60, "tokens_per_minute": 20000}
]}
```

`forgeline api-key` prints a fresh key with its entry. Plain keys are hashed as soon as they
are read and never kept. With no keys at all, the gateway is open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_PREFIX = "fl-"


def digest(key: str) -> bytes:
    """The sha256 digest a key is stored as."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One key: who it is, what it may call and how fast.

    Attributes:
        name: Shown in logs and metrics instead of the key.
        sha256: Digest of the key.
        models: Served names the key may use; None for all.
        requests_per_minute: Request rate limit; None for none.
        tokens_per_minute: Prompt plus completion tokens per minute; None for none.
    """

    name: str
    sha256: bytes
    models: frozenset[str] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def allows(self, model: str) -> bool:
        """Whether the key may use `model`."""
        return self.models is None or model in self.models

    def entry(self) -> dict[str, Any]:
        """The keys-file entry of this key."""
        entry: dict[str, Any] = {"name": self.name, "sha256": self.sha256.hex()}
        if self.models is not None:
            entry["models"] = sorted(self.models)
        if self.requests_per_minute is not None:
            entry["requests_per_minute"] = self.requests_per_minute
        if self.tokens_per_minute is not None:
            entry["tokens_per_minute"] = self.tokens_per_minute
        return entry


def _positive(entry: dict, name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}.{name}: must be a positive integer, got {value!r}")
    return value


def parse_entry(entry: Any, where: str) -> ApiKey:
    """Builds a key from one keys-file entry.

    Raises:
        ValueError: the entry is malformed; the message names `where` and the field.
    """
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be an object")
    unknown = set(entry) - {
        "name",
        "sha256",
        "key",
        "models",
        "requests_per_minute",
        "tokens_per_minute",
    }
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: must be a non-empty string")
    if ("sha256" in entry) == ("key" in entry):
        raise ValueError(f"{where}: give exactly one of sha256 (preferred) or key")
    if "sha256" in entry:
        try:
            sha = bytes.fromhex(str(entry["sha256"]))
        except ValueError:
            sha = b""
        if len(sha) != 32:
            raise ValueError(f"{where}.sha256: must be 64 hex digits")
    else:
        if not isinstance(entry["key"], str) or not entry["key"]:
            raise ValueError(f"{where}.key: must be a non-empty string")
        sha = digest(entry["key"])
    models = entry.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) for m in models)
    ):
        raise ValueError(f"{where}.models: must be a list of served model names")
    return ApiKey(
        name=name,
        sha256=sha,
        models=frozenset(models) if models is not None else None,
        requests_per_minute=_positive(entry, "requests_per_minute", where),
        tokens_per_minute=_positive(entry, "tokens_per_minute", where),
    )


class KeyStore:
    """The keys the gateway accepts."""

    def __init__(self, keys: Iterable[ApiKey] = ()):
        self.keys = list(keys)
        names = [k.name for k in self.keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"API key names must be unique; repeated: {duplicates}")

    @property
    def enabled(self) -> bool:
        """Whether requests need a key at all."""
        return bool(self.keys)

    def authenticate(self, presented: str) -> ApiKey | None:
        """Returns the key matching `presented`, or None.

        Every stored digest is compared, each in constant time, so the time taken does not
        reveal which key (or how much of one) matched.
        """
        candidate = digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(candidate, key.sha256):
                found = key
        return found

    @classmethod
    def load(cls, keys_file: str | Path | None = None, env_keys: str = "") -> KeyStore:
        """Reads the keys file and the comma-separated plain keys.

        Raises:
            ValueError: the file is unreadable or malformed; the message names the file
                and the entry.
        """
        keys = [
            ApiKey(name=f"env-{i}", sha256=digest(k.strip()))
            for i, k in enumerate(env_keys.split(","))
            if k.strip()
        ]
        if keys_file:
            path = Path(keys_file)
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"keys file {path}: {exc}") from None
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ValueError(f'keys file {path}: expected {{"keys": [...]}}')
            keys += [parse_entry(e, f"{path}: keys[{i}]") for i, e in enumerate(data["keys"])]
        return cls(keys)

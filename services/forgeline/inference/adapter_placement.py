"""Where a LoRA adapter runs: the served base model it is added to, checked to fit there.

An adapter runs on a base model's engine. The base is the one the caller names, or else a
served model loaded from the adapter's parent version (preferring one with LoRA enabled);
it must be READY, loaded with `engine.enable_lora`, not follow an alias (its version would
change under the adapter), and allow the adapter's rank. Every refusal says what to do
instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from forgeline.client.exceptions import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from forgeline.inference.resolver import pin
from forgeline.inference.served import ServedEntry, ServedKind, ServedState
from forgeline.v1 import registry_pb2


def place_adapter(
    served: Mapping[str, ServedEntry],
    version: registry_pb2.Version,
    path: Path,
    base_served_name: str | None,
) -> ServedEntry:
    """The base model the adapter `version` (its files in `path`) is to be added to.

    Args:
        served: Every served name and its entry.
        version: The adapter's registry version.
        path: The adapter's local folder.
        base_served_name: The base the caller asked for; None picks the served parent.

    Raises:
        InvalidArgument: the version is not an adapter, or `base_served_name` is one.
        NotFound: nothing is served as `base_served_name`.
        FailedPrecondition: no base to run on, LoRA not enabled there, or rank too high.
        Unavailable: the base is not READY.
    """
    if version.kind != registry_pb2.VERSION_KIND_ADAPTER:
        kind = registry_pb2.VersionKind.Name(version.kind)
        raise InvalidArgument(
            "ref", f"{pin(version)} is a {kind} version, not an adapter; use LoadModel"
        )
    base = _base_for(served, version, base_served_name)
    _check_rank(path, base)
    return base


def _base_for(
    served: Mapping[str, ServedEntry],
    version: registry_pb2.Version,
    base_served_name: str | None,
) -> ServedEntry:
    if base_served_name is not None:
        base = served.get(base_served_name)
        if base is None:
            raise NotFound("served model", base_served_name)
        if base.kind is not ServedKind.BASE:
            raise InvalidArgument(
                "base_served_name", f"{base_served_name} is an adapter, not a base model"
            )
    else:
        if not version.parents:
            raise FailedPrecondition(
                f"{pin(version)} names no parent version; pass base_served_name",
                subject=pin(version),
                type="ADAPTER_BASE",
            )
        parent = version.parents[0]
        exact = parent.WhichOneof("selector") == "version"
        candidates = [
            s
            for s in served.values()
            if s.kind is ServedKind.BASE
            and s.version is not None
            and s.version.model == parent.name
            and (not exact or s.version.number == parent.version)
        ]
        ready = [s for s in candidates if s.state is ServedState.READY]
        if not ready:
            wanted = f"{parent.name}:{parent.version}" if parent.version else parent.name
            raise FailedPrecondition(
                f"the base of {pin(version)}, {wanted}, is not served; deploy it with "
                "engine.enable_lora first, or pass base_served_name",
                subject=wanted,
                type="ADAPTER_BASE",
            )
        usable = [s for s in ready if s.options.enable_lora and not s.follows]
        base = usable[0] if usable else ready[0]
    if base.follows:
        raise FailedPrecondition(
            f"{base.name} follows {base.follows}, which moves it to new versions, and an "
            "adapter is trained on one base version: adapters cannot run on it. Deploy a "
            "pinned version (name:N) without follow to add adapters",
            subject=base.name,
            type="FOLLOWED_BASE",
        )
    if base.state is not ServedState.READY:
        raise Unavailable(f"{base.name} is not ready ({base.state.name})")
    if not base.options.enable_lora:
        raise FailedPrecondition(
            f"{base.name} was loaded without engine.enable_lora; load it again with "
            "enable_lora to add adapters",
            subject=base.name,
            type="LORA_DISABLED",
        )
    return base


def _check_rank(path: Path, base: ServedEntry) -> None:
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise FailedPrecondition(
            f"{path.name} has no adapter_config.json; is it a PEFT LoRA adapter?",
            subject=str(path),
            type="ADAPTER_FORMAT",
        )
    config = json.loads(config_file.read_text())
    ranks = [int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())]
    limit = base.options.lora_rank_limit
    if max(ranks) > limit:
        raise FailedPrecondition(
            f"the adapter's rank {max(ranks)} exceeds {base.name}'s max_lora_rank {limit}; "
            "load the base again with a larger engine.max_lora_rank",
            subject=base.name,
            type="LORA_RANK",
        )

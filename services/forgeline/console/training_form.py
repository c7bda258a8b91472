"""The training form: its fields are the options of `forgeline sft|pt|dpo`, and it becomes
a job spec through the CLI's own `build_spec`, so the form, the command line and the job
file it shows always describe the same job.

Field problems come back under the form's names: a value that is not of the option's
type here, and each of the trainer's field violations (`spec.hyper_parameters.
learning_rate`) under the option that sets that field (`learning_rate`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeline.cli.choices import enum_value
from forgeline.cli.jobfile import COMMANDS
from forgeline.cli.jobfile_write import dump_job_file, with_defaults
from forgeline.cli.training_flags import (
    FIELDS,
    INPUT_FIELDS,
    build_spec,
    command_line,
    option_field,
)
from forgeline.client.refs import RefError, parse_ref
from forgeline.console.errors import ConsoleError
from forgeline.v1 import trainer_pb2

TASKS = {name: task for task, name in COMMANDS.items()}
# Options a browser may not set: a DeepSpeed JSON is read from the server's disk.
SERVER_SIDE = frozenset({"deepspeed"})
_INTEGERS = (
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
)
_FLOATS = (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT)


@dataclass
class TrainingForm:
    """A submitted form as the CLI would take it.

    Attributes:
        command: `sft`, `pt` or `dpo`.
        inputs: `model`, `dataset` (and `eval_dataset`) as references.
        flags: The options given, as `build_spec` takes them.
        spec: The complete spec, inputs included.
    """

    command: str
    inputs: dict[str, str]
    flags: dict[str, Any]
    spec: trainer_pb2.TrainJobSpec

    def job_file(self) -> str:
        """The YAML job file of this job (`forgeline <command> --config FILE`)."""
        rest = trainer_pb2.TrainJobSpec()
        rest.CopyFrom(self.spec)
        file_inputs = {}
        for option, key in INPUT_FIELDS.items():
            rest.ClearField(key)
            if self.inputs.get(option):
                file_inputs[key] = self.inputs[option]
        return dump_job_file(rest, file_inputs, with_defaults(rest, file_inputs))

    def command_line(self) -> str:
        """The equivalent `forgeline <command> ...` line."""
        return command_line(self.command, self.inputs, self.flags)


def parse_form(form: Mapping[str, Any]) -> TrainingForm:
    """Builds the job of a submitted form.

    Raises:
        ConsoleError: 400 naming every field that is unknown, missing or not of its type.
    """
    problems: list[dict] = []

    def problem(name: str, description: str) -> None:
        problems.append({"field": name, "description": description})

    command = str(form.get("task") or "sft")
    if command not in TASKS:
        problem("task", f"not one of {', '.join(TASKS)}")
    inputs = {}
    for option in INPUT_FIELDS:
        text = str(form.get(option) or "").strip()
        if not text:
            if option != "eval_dataset":
                problem(option, "is required")
            continue
        try:
            parse_ref(text)
            inputs[option] = text
        except RefError as err:
            problem(option, str(err))
    flags: dict[str, Any] = {}
    for name, raw in form.items():
        if name in ("task", *INPUT_FIELDS) or raw is None or raw == "":
            continue
        if name not in FIELDS or name in SERVER_SIDE:
            problem(name, "is not a field of the training form")
            continue
        try:
            flags[name] = _value(name, raw)
        except ValueError as err:
            problem(name, str(err))
    spec = trainer_pb2.TrainJobSpec()
    if not problems:
        try:
            spec = build_spec(TASKS[command], flags)
        except RefError as err:
            problem("reference_model", str(err))
    if problems:
        raise ConsoleError(400, "the form has problems", violations=problems)
    for option, key in INPUT_FIELDS.items():
        if option in inputs:
            getattr(spec, key).CopyFrom(parse_ref(inputs[option]))
    return TrainingForm(command, inputs, flags, spec)


def _value(name: str, raw: Any) -> Any:
    """A form value as the option takes it.

    Raises:
        ValueError: it is not of the option's type (the message says what is expected).
    """
    if name == "label":
        items = raw if isinstance(raw, list) else re.split(r"[,\n]", str(raw))
        items = [str(i).strip() for i in items if str(i).strip()]
        if any("=" not in i for i in items):
            raise ValueError("use KEY=VALUE")
        return items
    f = option_field(name)
    if f.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "1", "on", "yes"):
            return True
        if str(raw).lower() in ("false", "0", "off", "no"):
            return False
        raise ValueError("must be true or false")
    if f.enum_type is not None:
        return enum_value(EnumTypeWrapper(f.enum_type), str(raw))
    if f.cpp_type in _INTEGERS:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if value < 0 and f.cpp_type in _INTEGERS[2:]:
            raise ValueError("must not be negative")
        return value
    if f.cpp_type in _FLOATS:
        try:
            return float(str(raw).strip())
        except ValueError:
            raise ValueError("must be a number") from None
    return str(raw)


def form_field(path: str) -> str:
    """The form field that sets a spec field path (`spec.lora.rank` -> `lora_rank`); the
    path itself when no field sets it."""
    key = re.sub(r"\[\d+\]", "", path.removeprefix("spec."))
    by_path = {v: k for k, v in {**FIELDS, **INPUT_FIELDS}.items()}
    while key:
        if key in by_path:
            return by_path[key]
        key = key.rpartition(".")[0]
    return path


def field_violations(violations: Iterable[Any]) -> list[dict]:
    """Violations (the SDK's or a plan's) under the form's field names, with their path."""
    return [
        {"field": form_field(v.field), "path": v.field, "description": v.description}
        for v in violations
    ]

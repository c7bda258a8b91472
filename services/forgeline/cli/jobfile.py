"""Job files: a training job's `TrainJobSpec` as YAML or JSON.

`forgeline sft|pt|dpo --config FILE` reads one (this module), `--print-config` writes the
one a command line amounts to (`jobfile_write`), and `forgeline jobs show JOB --config`
writes the one a job ran with, so that `--config` on it runs the same job again.

A job file holds the spec's fields under the contract's names, nested as in the contract
(`hyper_parameters: {learning_rate: 2e-4}`); enums by their label in any case, with `-` or
`_` between words, or by their full name (`tuner: lora`, `lr_scheduler: COSINE`); model
references as text (`reference_model: law:1`). `base_model`, `dataset` and
`eval_dataset` are the job's inputs, kept as written: a reference, or for a dataset a
local file (relative to the current directory, like `--dataset`), checked and uploaded
when the job is submitted. JSON files (`.json`, or text starting with `{`) are read as
JSON, everything else as YAML, where `2e-4` is a number as in YAML 1.2.

Everything wrong with a file is reported at once, each problem with the file, the line
and the key: unknown keys (with the closest valid one), values of the wrong type, enum
values that do not exist, and values the trainer's own checks
(`forgeline.trainer.config.check_spec`) refuse.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeline.cli.choices import enum_value
from forgeline.client.labels import label
from forgeline.client.refs import RefError, parse_ref
from forgeline.trainer.config import check_spec
from forgeline.v1 import common_pb2, trainer_pb2

# The job's inputs: given as text, resolved when the job is submitted.
INPUTS = ("base_model", "dataset", "eval_dataset")
# The command that runs each task.
COMMANDS = {
    trainer_pb2.TRAIN_TASK_SFT: "sft",
    trainer_pb2.TRAIN_TASK_PRETRAIN: "pt",
    trainer_pb2.TRAIN_TASK_DPO: "dpo",
}
SPEC_DESCRIPTOR = trainer_pb2.TrainJobSpec.DESCRIPTOR
MODEL_REF_DESCRIPTOR = common_pb2.ModelRef.DESCRIPTOR
_UNSIGNED_BITS = {FieldDescriptor.CPPTYPE_UINT32: 32, FieldDescriptor.CPPTYPE_UINT64: 64}
_SIGNED = (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64)
_FLOATS = (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT)


class JobFileError(Exception):
    """A job file that cannot be used.

    Attributes:
        problems: Every problem, each as `FILE:LINE: key: what is wrong` where known.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class JobFile:
    """What a job file gives.

    Attributes:
        path: The file.
        spec: The spec it holds, without its inputs.
        inputs: `base_model`, `dataset` and `eval_dataset` as written, where given.
        lines: The line of every key, by its path (`hyper_parameters.learning_rate`).
    """

    path: Path
    spec: trainer_pb2.TrainJobSpec
    inputs: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def locate(self, key: str) -> str | None:
        """`FILE:LINE` of a key path, or of the nearest enclosing key the file has;
        None when the file has neither."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            line = self.lines.get(".".join(parts[:n]))
            if line is not None:
                return f"{self.path}:{line}"
        return None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `2e-4` as a number (YAML 1.2) rather than as text."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_job_file(path: Path, task: int, familiar: Mapping[str, str] | None = None) -> JobFile:
    """Reads and checks a job file.

    Args:
        path: The file, YAML or JSON.
        task: The `TrainTask` of the command reading it; a file naming another is refused.
        familiar: Keys other trainers use, each with the path of the field it corresponds
            to, suggested when a file uses one (`num_train_epochs` -> `hyper_parameters.epochs`).

    Raises:
        JobFileError: the file cannot be read or has problems; all of them are listed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError([f"{path}: cannot be read: {exc}"]) from None
    data, node = _parse(path, text)
    problems: list[str] = []
    lines = _key_lines(node, path, problems)
    job = JobFile(path, trainer_pb2.TrainJobSpec(), lines=lines)

    def problem(key: str, what: str) -> None:
        problems.append(f"{job.locate(key) or path}: {key}: {what}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise JobFileError([f"{path}: expected the spec's fields as `key: value` lines"])
    for key in INPUTS:
        value = data.pop(key, None)
        if value is None:
            continue
        if isinstance(value, str) and value.strip():
            job.inputs[key] = value.strip()
        else:
            problem(key, f"expected a reference or a file name, got {value!r}")
    given_task = data.pop("task", None)
    if given_task is not None:
        _check_task(given_task, task, path, problem)
    converted = _convert(data, SPEC_DESCRIPTOR, "", problem, familiar or {})
    if problems:
        raise JobFileError(problems)
    json_format.ParseDict(converted, job.spec)
    return job


def spec_problems(
    spec: trainer_pb2.TrainJobSpec, job: JobFile | None, flags: Mapping[str, str]
) -> list[str]:
    """What the trainer's checks refuse in a spec, each said where it was set.

    Checks that depend on the cluster (whether it has GPUs) and on the inputs (resolved
    later) are left to the trainer.

    Args:
        spec: The spec, without its inputs.
        job: The job file it started from, if any.
        flags: The field paths set on the command line, each with its flag.

    Returns:
        One line per problem: `--flag: what`, `FILE:LINE: key: what`, or `key: what`.
    """
    out = []
    for violation in check_spec(spec, gpus_available=True).problems:
        key = re.sub(r"\[\d+\]", "", violation.field.removeprefix("spec."))
        if key.split(".")[0] in INPUTS:
            continue
        flag = next((f for path, f in flags.items() if _related(path, key)), None)
        where = job.locate(key) if job is not None else None
        if flag is not None:
            out.append(f"{flag}: {violation.description}")
        elif where is not None:
            out.append(f"{where}: {key}: {violation.description}")
        else:
            out.append(f"{key}: {violation.description}")
    return out


def _related(a: str, b: str) -> bool:
    """Whether two field paths are the same field or one holds the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


# -- reading ---------------------------------------------------------------------------------


def _parse(path: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """The file's data and, for the lines of its keys, its YAML node tree."""
    if path.suffix.lower() == ".json" or (
        path.suffix.lower() not in (".yaml", ".yml") and text.lstrip().startswith("{")
    ):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JobFileError([f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}"]) from None
        try:  # JSON is YAML, except for tabs between tokens; the lines are all we take
            node = yaml.compose(text.expandtabs(), Loader=_Loader)
        except yaml.YAMLError:
            node = None
        return data, node
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise JobFileError([f"{path}:{mark.line + 1}:{mark.column + 1}: {what}"]) from None
    except yaml.YAMLError as exc:
        raise JobFileError([f"{path}: {exc}"]) from None
    finally:
        loader.dispose()


def _key_lines(node: yaml.Node | None, path: Path, problems: list[str]) -> dict[str, int]:
    """The line of every key path in a node tree; a key given twice is a problem."""
    lines: dict[str, int] = {}

    def walk(n: yaml.Node, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = f"{prefix}{key_node.value}"
                line = key_node.start_mark.line + 1
                if key in lines:
                    problems.append(
                        f"{path}:{line}: {key}: given twice (first on line {lines[key]})"
                    )
                lines.setdefault(key, line)
                walk(value_node, f"{key}.")
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                key = f"{prefix.removesuffix('.')}[{i}]"
                lines[key] = item.start_mark.line + 1
                walk(item, f"{key}.")

    if node is not None:
        walk(node, "")
    return lines


def _check_task(given: Any, task: int, path: Path, problem) -> None:
    try:
        value = enum_value(trainer_pb2.TrainTask, str(given))
    except ValueError as exc:
        problem("task", str(exc))
        return
    if value != task:
        name = label(trainer_pb2.TrainTask, value)
        problem(
            "task",
            f"this is a {name} job; run it with `forgeline {COMMANDS[value]} --config {path}`",
        )


def _convert(data: dict, message: Descriptor, prefix: str, problem, familiar) -> dict:
    """A job file's mapping for `message` in the JSON form `json_format.ParseDict` reads:
    enums by full name, references as `ModelRef` mappings. Problems go to `problem`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        f = message.fields_by_name.get(key) if isinstance(key, str) else None
        if f is None:
            problem(path, _unknown_key(str(key), message, prefix, familiar))
            continue
        if value is None:  # an empty entry leaves the field unset
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                problem(path, "expected `key: value` lines")
            else:
                for k, v in value.items():
                    if not isinstance(v, str):
                        problem(f"{path}.{k}", f"expected text, got {v!r} (quote it)")
                out[key] = {str(k): v for k, v in value.items()}
        elif f.is_repeated:
            if not isinstance(value, list):
                problem(path, f"expected a list, e.g. [q_proj, v_proj], got {value!r}")
                continue
            items = [_scalar(v, f, f"{path}[{i}]", problem, familiar) for i, v in enumerate(value)]
            out[key] = items
        else:
            converted = _scalar(value, f, path, problem, familiar)
            if converted is not None:
                out[key] = converted
    return out


def _scalar(value: Any, f: FieldDescriptor, path: str, problem, familiar) -> Any:
    """One value of field `f` in `ParseDict`'s form; None (with a problem) if it is wrong."""
    cpp = f.cpp_type
    if f.message_type is MODEL_REF_DESCRIPTOR:
        if not isinstance(value, str):
            return _wrong(value, "a reference such as name, name:3 or name@alias", path, problem)
        try:
            return as_dict(parse_ref(value))
        except RefError as exc:
            problem(path, str(exc))
            return None
    if f.message_type is not None:
        if not isinstance(value, dict):
            return _wrong(value, "a mapping (`key: value` lines below it)", path, problem)
        return _convert(value, f.message_type, f"{path}.", problem, familiar)
    if f.enum_type is not None:
        if not isinstance(value, str):
            return _wrong(value, "one of the names it takes", path, problem)
        try:
            return f.enum_type.values_by_number[
                enum_value(EnumTypeWrapper(f.enum_type), value)
            ].name
        except ValueError as exc:
            problem(path, str(exc))
            return None
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return value if isinstance(value, bool) else _wrong(value, "true or false", path, problem)
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return value if isinstance(value, str) else _wrong(value, "text", path, problem)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if cpp in _FLOATS:
        return value if number else _wrong(value, "a number", path, problem)
    if not number or value != int(value):
        return _wrong(value, "a whole number", path, problem)
    if cpp in _UNSIGNED_BITS:
        top = 2 ** _UNSIGNED_BITS[cpp] - 1
        if not 0 <= value <= top:
            problem(path, f"must be in 0..{top}, got {value}")
            return None
    elif cpp in _SIGNED and not -(2**63) <= value < 2**63:
        problem(path, f"{value} is out of range")
        return None
    return int(value)


def _wrong(value: Any, expected: str, path: str, problem) -> None:
    kind = {bool: "true/false", str: "text", list: "a list", dict: "a mapping"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
    problem(path, f"expected {expected}, got {kind} {value!r}")


def _unknown_key(key: str, message: Descriptor, prefix: str, familiar: Mapping[str, str]) -> str:
    """The problem of an unknown key, with the key most likely meant."""
    where = f"in {prefix.removesuffix('.')}" if prefix else "at the top level"
    normalized = key.lower().replace("-", "_")
    everywhere = {p.rsplit(".", 1)[-1]: p for p in _field_paths(SPEC_DESCRIPTOR, "")}
    # Another trainer's name for a field, or a field of another section, said exactly...
    meant = familiar.get(normalized) or everywhere.get(normalized)
    if meant is None:  # ...else a misspelling, of this section's keys first
        close = difflib.get_close_matches(normalized, list(message.fields_by_name), n=1)
        if close:
            meant = f"{prefix}{close[0]}"
        else:
            close = difflib.get_close_matches(normalized, [*everywhere, *familiar], n=1)
            if close:
                meant = everywhere.get(close[0]) or familiar[close[0]]
    hint = f"; did you mean {meant}?" if meant else ""
    return f"unknown key {where}{hint}"


def _field_paths(message: Descriptor, prefix: str) -> Iterator[str]:
    """Every field path of a message, nested messages included (references as one field)."""
    for f in message.fields:
        path = f"{prefix}{f.name}"
        yield path
        nested = f.message_type
        if nested is None or nested is MODEL_REF_DESCRIPTOR:
            continue
        if not nested.GetOptions().map_entry:
            yield from _field_paths(nested, f"{path}.")


def as_dict(message) -> dict:
    """A message as a job file's data: the contract's field names, set fields only."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, unquote_int64_if_possible=True
    )

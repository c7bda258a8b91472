"""What an evaluation job runs: suite names and defaults, and the checks of the spec alone.

Suites take the names registry gates use: `mmlu`, `ceval`, `cmmlu` for multiple choice in
those layouts, `qa` (or a built-in set's own name, like `gsm8k`) for generation QA,
`perplexity` for perplexity; a name given in the spec wins. `fill_defaults` writes the
names and defaults into the spec before it is stored, so the stored spec says exactly
what ran.
"""

from __future__ import annotations

from forgeline.client import exceptions
from forgeline.client.refs import RefError, check_name
from forgeline.v1 import evaluator_pb2 as e

DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 64
FORMAT_NAMES = {
    e.MULTIPLE_CHOICE_FORMAT_MMLU: "mmlu",
    e.MULTIPLE_CHOICE_FORMAT_CEVAL: "ceval",
    e.MULTIPLE_CHOICE_FORMAT_CMMLU: "cmmlu",
}


def default_suite_name(suite: e.EvalSuite) -> str:
    """The name a suite is reported (and gated) under when the spec gives none."""
    kind = suite.WhichOneof("suite")
    if kind == "multiple_choice":
        return FORMAT_NAMES.get(suite.multiple_choice.format, "multiple-choice")
    if kind == "generation_qa":
        builtin = suite.generation_qa.builtin
        return builtin.removesuffix("-mini") if builtin else "qa"
    return "perplexity"


def fill_defaults(spec: e.EvalJobSpec) -> e.EvalJobSpec:
    """A copy of `spec` with suite names and numeric defaults written in."""
    out = e.EvalJobSpec()
    out.CopyFrom(spec)
    out.batch_size = out.batch_size or DEFAULT_BATCH_SIZE
    for suite in out.suites:
        suite.name = suite.name or default_suite_name(suite)
        if suite.WhichOneof("suite") == "multiple_choice":
            mc = suite.multiple_choice
            if not mc.format and mc.builtin:
                mc.format = e.MULTIPLE_CHOICE_FORMAT_MMLU
        elif suite.WhichOneof("suite") == "generation_qa":
            qa = suite.generation_qa
            if not qa.builtin:  # a built-in set brings its own rule and answer length
                qa.max_new_tokens = qa.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
                qa.match_rule = qa.match_rule or e.MATCH_RULE_EXACT
    return out


def check_spec(spec: e.EvalJobSpec) -> exceptions.Violations:
    """Every problem of a spec (defaults filled) that shows without the registry."""
    v = exceptions.Violations()
    target = spec.target.WhichOneof("target")
    v.check(target is not None, "spec.target", "give a registry version or a served model")
    if spec.attach_to_registry:
        v.check(
            target != "served_model",
            "spec.attach_to_registry",
            "only a registry version can carry its reports",
        )
    v.check(bool(spec.suites), "spec.suites", "give at least one suite")
    names: set[str] = set()
    for i, suite in enumerate(spec.suites):
        field = f"spec.suites[{i}]"
        try:
            check_name(suite.name, "suite name")
        except RefError as exc:
            v.add(f"{field}.name", str(exc))
        v.check(suite.name not in names, f"{field}.name", f"{suite.name!r} appears twice")
        names.add(suite.name)
        kind = suite.WhichOneof("suite")
        if kind is None:
            v.add(field, "choose multiple_choice, generation_qa or perplexity")
        elif kind == "multiple_choice":
            mc = suite.multiple_choice
            v.check(
                mc.format in FORMAT_NAMES,
                f"{field}.multiple_choice.format",
                "choose MMLU, CEVAL or CMMLU",
            )
            v.check(
                mc.WhichOneof("source") is not None,
                f"{field}.multiple_choice",
                "give a dataset or a builtin",
            )
        elif kind == "generation_qa":
            qa = suite.generation_qa
            v.check(
                bool(qa.dataset.name) != bool(qa.builtin),
                f"{field}.generation_qa",
                "give exactly one of dataset and builtin",
            )
        else:
            v.check(
                bool(suite.perplexity.dataset.name),
                f"{field}.perplexity.dataset",
                "give a DATASET version with a text field",
            )
    return v

"""From an evaluation spec to the suites the scorer runs, with their data on disk.

The planner (to check every file before any engine starts) and the worker (to run them)
build the same suites the same way: `dataset_refs` says which registry versions a spec
reads, the caller pulls them, and `build_suites` turns the spec and the pulled folders into
`MultipleChoiceSuite`, `GenerationQaSuite` and `PerplexitySuite` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from forgeline.client.refs import format_ref
from forgeline.evaluator.builtin import builtin_suite
from forgeline.evaluator.generation_qa import GenerationQaSuite
from forgeline.evaluator.matching import Matcher, MatchRule
from forgeline.evaluator.multiple_choice import MultipleChoiceSuite
from forgeline.evaluator.multiple_choice_data import MultipleChoiceFormat
from forgeline.evaluator.perplexity_suite import PerplexitySuite
from forgeline.v1 import common_pb2
from forgeline.v1 import evaluator_pb2 as e

FORMATS = {
    e.MULTIPLE_CHOICE_FORMAT_MMLU: MultipleChoiceFormat.MMLU,
    e.MULTIPLE_CHOICE_FORMAT_CEVAL: MultipleChoiceFormat.CEVAL,
    e.MULTIPLE_CHOICE_FORMAT_CMMLU: MultipleChoiceFormat.CMMLU,
}
RULES = {
    e.MATCH_RULE_UNSPECIFIED: MatchRule.EXACT,
    e.MATCH_RULE_EXACT: MatchRule.EXACT,
    e.MATCH_RULE_NORMALIZED: MatchRule.NORMALIZED,
    e.MATCH_RULE_CONTAINS: MatchRule.CONTAINS,
    e.MATCH_RULE_REGEX: MatchRule.REGEX,
    e.MATCH_RULE_NUMERIC: MatchRule.NUMERIC,
}
Suite = MultipleChoiceSuite | GenerationQaSuite | PerplexitySuite


def dataset_refs(spec: e.EvalJobSpec) -> dict[str, common_pb2.ModelRef]:
    """The DATASET versions the suites read, by spec field."""
    refs = {}
    for i, suite in enumerate(spec.suites):
        kind = suite.WhichOneof("suite")
        body = getattr(suite, kind) if kind else None
        if kind == "multiple_choice" and body.WhichOneof("source") == "dataset":
            refs[f"spec.suites[{i}].multiple_choice.dataset"] = body.dataset
        elif kind in ("generation_qa", "perplexity") and body.dataset.name:
            refs[f"spec.suites[{i}].{kind}.dataset"] = body.dataset
    return refs


def build_suites(spec: e.EvalJobSpec, folders: Mapping[str, Path]) -> list[Suite]:
    """The spec's suites over their data: `folders` maps each dataset reference (its text
    form, as `format_ref` writes it) to its pulled folder.

    Raises:
        InvalidArgument: an unknown built-in set, or one of the wrong kind.
    """
    suites: list[Suite] = []
    for i, suite in enumerate(spec.suites):
        kind = suite.WhichOneof("suite")
        prefix = f"spec.suites[{i}].{kind}"
        if kind == "multiple_choice":
            mc = suite.multiple_choice
            options = {
                "subjects": tuple(mc.subjects),
                "limit_per_subject": mc.limit_per_subject,
            }
            if mc.num_few_shot:
                options["num_few_shot"] = mc.num_few_shot
            if mc.WhichOneof("source") == "builtin":
                found = builtin_suite(mc.builtin, field=f"{prefix}.builtin")
                suites.append(
                    found.multiple_choice(name=suite.name, field_prefix=prefix, **options)
                )
            else:
                suites.append(
                    MultipleChoiceSuite(
                        name=suite.name,
                        folder=folders[format_ref(mc.dataset)],
                        format=FORMATS[mc.format],
                        field_prefix=prefix,
                        **options,
                    )
                )
        elif kind == "generation_qa":
            qa = suite.generation_qa
            options = {
                "limit": qa.limit,
                "apply_chat_template": (
                    qa.apply_chat_template if qa.HasField("apply_chat_template") else None
                ),
            }
            if qa.max_new_tokens:
                options["max_new_tokens"] = qa.max_new_tokens
            if qa.match_rule:
                options["matcher"] = Matcher(
                    RULES[qa.match_rule], pattern=qa.regex_pattern, ignore_case=qa.ignore_case
                )
            if qa.builtin:
                found = builtin_suite(qa.builtin, field=f"{prefix}.builtin")
                suites.append(found.generation_qa(name=suite.name, field_prefix=prefix, **options))
            else:
                suites.append(
                    GenerationQaSuite(
                        name=suite.name,
                        path=folders[format_ref(qa.dataset)],
                        field_prefix=prefix,
                        **options,
                    )
                )
        else:
            ppl = suite.perplexity
            suites.append(
                PerplexitySuite(
                    name=suite.name,
                    path=folders[format_ref(ppl.dataset)],
                    max_seq_length=ppl.max_seq_length,
                    stride=ppl.stride,
                    limit=ppl.limit,
                    field_prefix=prefix,
                )
            )
    return suites

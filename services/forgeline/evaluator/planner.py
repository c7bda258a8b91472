"""Checks an evaluation spec before any engine starts, picks suites when none are given.

Everything a user can get wrong is found here, at submission, with its field: a target
version that is not READY (or an adapter whose base is gone), a served model that does not
exist, a dataset that is not a DATASET, malformed CSV rows and missing columns (file and
line), unknown subjects (named with the available ones), a QA file without answers.
Every data file is read once here, so a job that starts never fails on its inputs.

A spec without suites gets them from the target (as a seed system picks metrics from the
task): the MMLU subset for any model; for an adapter whose training job had an eval set of
questions and answers, QA on it too; for a quantized version, the suites its source was
evaluated with, and perplexity.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.labels import label
from forgeline.client.refs import format_ref, parse_ref, pinned
from forgeline.evaluator.builtin import builtin_suites
from forgeline.evaluator.spec import check_spec, fill_defaults
from forgeline.evaluator.suites import build_suites, dataset_refs
from forgeline.v1 import common_pb2, registry_pb2
from forgeline.v1 import evaluator_pb2 as e

log = logging.getLogger(__name__)

TARGET_KINDS = (
    registry_pb2.VERSION_KIND_BASE,
    registry_pb2.VERSION_KIND_MERGED,
    registry_pb2.VERSION_KIND_QUANTIZED,
    registry_pb2.VERSION_KIND_ADAPTER,
)
# Lists the names served right now (the inference service's), for served-model targets.
ServedNames = Callable[[], list[str]]


class EvalPlanner:
    """Validates evaluation specs against the registry and the inference service.

    Args:
        cache: The registry and this machine's version cache.
        served_names: Names the inference service serves READY now.
    """

    def __init__(self, cache: VersionCache, served_names: ServedNames | None = None):
        self.cache = cache
        self.served_names = served_names

    def validate(self, spec: e.EvalJobSpec) -> e.EvalJobSpec:
        """Returns the spec to store: suites chosen, references pinned, defaults written.

        Raises:
            InvalidArgument: every problem, each naming its field (and file and line).
        """
        v = exceptions.Violations()
        resolved = e.EvalJobSpec()
        resolved.CopyFrom(spec)
        target = self._target(resolved, v)
        if not resolved.suites and target is not None:
            resolved.suites.extend(self.default_suites(target))
        resolved = fill_defaults(resolved)
        v.extend(check_spec(resolved))
        if resolved.target.WhichOneof("target") == "served_model":
            for i, suite in enumerate(resolved.suites):
                v.check(
                    suite.WhichOneof("suite") != "perplexity",
                    f"spec.suites[{i}].perplexity",
                    "perplexity needs the model's weights: evaluate a registry version",
                )
        if not v:
            folders = self._datasets(resolved, v)
            if not v:
                try:
                    for suite in build_suites(resolved, folders):
                        suite.load()  # reads and checks every file now, not in the job
                except exceptions.InvalidArgument as exc:
                    v.extend(exc.violations)
        v.raise_if_any()
        return resolved

    def _target(self, spec: e.EvalJobSpec, v: exceptions.Violations):
        which = spec.target.WhichOneof("target")
        if which == "served_model":
            name = spec.target.served_model
            try:
                served = self.served_names() if self.served_names else []
            except exceptions.Unavailable as exc:
                v.add(
                    "spec.target.served_model",
                    f"cannot check that {name!r} is served: the inference service is "
                    f"unreachable ({exc.message})",
                )
                return None
            if name not in served:
                shown = ", ".join(served) or "none"
                v.add(
                    "spec.target.served_model", f"no model is served as {name!r}; served: {shown}"
                )
            return None
        if which != "version":
            return None
        try:
            version = self.cache.resolve(spec.target.version)
        except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
            v.add("spec.target.version", f"{format_ref(spec.target.version)}: {exc.message}")
            return None
        if version.kind not in TARGET_KINDS:
            kind = label(registry_pb2.VersionKind, version.kind)
            v.add("spec.target.version", f"{pinned(version)} is a {kind} version, not a model")
            return None
        if version.kind == registry_pb2.VERSION_KIND_ADAPTER:
            try:
                self.cache.resolve(version.parents[0])
            except (exceptions.NotFound, exceptions.FailedPrecondition, IndexError) as exc:
                v.add("spec.target.version", f"the base of {pinned(version)} is gone: {exc}")
                return None
        spec.target.version.CopyFrom(
            common_pb2.ModelRef(name=version.model, version=version.number)
        )
        return version

    def _datasets(self, spec: e.EvalJobSpec, v: exceptions.Violations) -> dict[str, Path]:
        folders = {}
        for field, ref in dataset_refs(spec).items():
            try:
                version = self.cache.resolve(ref)
            except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
                v.add(field, f"{format_ref(ref)}: {exc.message}")
                continue
            if version.kind != registry_pb2.VERSION_KIND_DATASET:
                kind = label(registry_pb2.VersionKind, version.kind)
                v.add(field, f"{pinned(version)} is a {kind} version, not a DATASET")
                continue
            ref.CopyFrom(common_pb2.ModelRef(name=version.model, version=version.number))
            folders[format_ref(ref)] = self.cache.pull(ref).path
        return folders

    # -- suites chosen from the target ---------------------------------------------------

    def default_suites(self, target: registry_pb2.Version) -> list[e.EvalSuite]:
        """The suites a target gets when the spec names none (see the module docstring)."""
        suites = [_mmlu_subset()]
        if target.kind == registry_pb2.VERSION_KIND_ADAPTER:
            qa = self._training_eval_set(target)
            if qa is not None:
                suites.append(qa)
        if target.kind == registry_pb2.VERSION_KIND_QUANTIZED and target.parents:
            source = target.parents[0]
            for evaluation in self._evaluations(source):
                if evaluation.suite in {s.name for s in suites}:
                    continue
                builtin = f"{evaluation.suite}-mini"
                if builtin in builtin_suites():
                    suites.append(e.EvalSuite(generation_qa=e.GenerationQaSuite(builtin=builtin)))
            calibration = next((p for p in target.parents[1:] if self._is_dataset(p)), None)
            if calibration is not None:
                suites.append(
                    e.EvalSuite(
                        name="perplexity",
                        perplexity=e.PerplexitySuite(dataset=calibration, limit=64),
                    )
                )
        return suites

    def _training_eval_set(self, adapter: registry_pb2.Version) -> e.EvalSuite | None:
        """QA on the eval set of the job that trained `adapter`, when it holds QA pairs."""
        try:
            spec = json.loads(adapter.lineage.spec_json or "{}")
        except ValueError:
            return None
        ref = spec.get("evalDataset") or spec.get("eval_dataset")
        if not ref or not ref.get("name"):
            return None
        text = ref["name"] + (f":{ref['version']}" if ref.get("version") else "")
        suite = e.EvalSuite(
            name="qa",
            generation_qa=e.GenerationQaSuite(
                dataset=parse_ref(text), match_rule=e.MATCH_RULE_CONTAINS, ignore_case=True
            ),
        )
        try:
            folders = self._datasets(e.EvalJobSpec(suites=[suite]), exceptions.Violations())
            build_suites(fill_defaults(e.EvalJobSpec(suites=[suite])), folders)[0].load()
        except (exceptions.InvalidArgument, KeyError):
            log.info("the eval set of %s holds no question/answer pairs", pinned(adapter))
            return None
        return suite

    def _evaluations(self, ref: common_pb2.ModelRef) -> list[registry_pb2.Evaluation]:
        try:
            return self.cache.registry.list_evaluations(ref)
        except exceptions.ForgelineError:
            return []

    def _is_dataset(self, ref: common_pb2.ModelRef) -> bool:
        try:
            return self.cache.resolve(ref).kind == registry_pb2.VERSION_KIND_DATASET
        except exceptions.ForgelineError:
            return False


def _mmlu_subset() -> e.EvalSuite:
    return e.EvalSuite(
        name="mmlu",
        multiple_choice=e.MultipleChoiceSuite(
            format=e.MULTIPLE_CHOICE_FORMAT_MMLU, builtin="mmlu-mini"
        ),
    )

import datetime

from forgeline.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MultipleChoiceFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MULTIPLE_CHOICE_FORMAT_UNSPECIFIED: _ClassVar[MultipleChoiceFormat]
    MULTIPLE_CHOICE_FORMAT_MMLU: _ClassVar[MultipleChoiceFormat]
    MULTIPLE_CHOICE_FORMAT_CEVAL: _ClassVar[MultipleChoiceFormat]
    MULTIPLE_CHOICE_FORMAT_CMMLU: _ClassVar[MultipleChoiceFormat]

class MatchRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_RULE_UNSPECIFIED: _ClassVar[MatchRule]
    MATCH_RULE_EXACT: _ClassVar[MatchRule]
    MATCH_RULE_CONTAINS: _ClassVar[MatchRule]
    MATCH_RULE_REGEX: _ClassVar[MatchRule]
    MATCH_RULE_NORMALIZED: _ClassVar[MatchRule]
    MATCH_RULE_NUMERIC: _ClassVar[MatchRule]
MULTIPLE_CHOICE_FORMAT_UNSPECIFIED: MultipleChoiceFormat
MULTIPLE_CHOICE_FORMAT_MMLU: MultipleChoiceFormat
MULTIPLE_CHOICE_FORMAT_CEVAL: MultipleChoiceFormat
MULTIPLE_CHOICE_FORMAT_CMMLU: MultipleChoiceFormat
MATCH_RULE_UNSPECIFIED: MatchRule
MATCH_RULE_EXACT: MatchRule
MATCH_RULE_CONTAINS: MatchRule
MATCH_RULE_REGEX: MatchRule
MATCH_RULE_NORMALIZED: MatchRule
MATCH_RULE_NUMERIC: MatchRule

class EvalTarget(_message.Message):
    __slots__ = ("version", "served_model")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    version: _common_pb2.ModelRef
    served_model: str
    def __init__(self, version: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., served_model: _Optional[str] = ...) -> None: ...

class EvalJobSpec(_message.Message):
    __slots__ = ("target", "suites", "batch_size", "resources", "attach_to_registry", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SUITES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTACH_TO_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    target: EvalTarget
    suites: _containers.RepeatedCompositeFieldContainer[EvalSuite]
    batch_size: int
    resources: _common_pb2.ResourceRequest
    attach_to_registry: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, target: _Optional[_Union[EvalTarget, _Mapping]] = ..., suites: _Optional[_Iterable[_Union[EvalSuite, _Mapping]]] = ..., batch_size: _Optional[int] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., attach_to_registry: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvalSuite(_message.Message):
    __slots__ = ("name", "multiple_choice", "generation_qa", "perplexity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_CHOICE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_QA_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    multiple_choice: MultipleChoiceSuite
    generation_qa: GenerationQaSuite
    perplexity: PerplexitySuite
    def __init__(self, name: _Optional[str] = ..., multiple_choice: _Optional[_Union[MultipleChoiceSuite, _Mapping]] = ..., generation_qa: _Optional[_Union[GenerationQaSuite, _Mapping]] = ..., perplexity: _Optional[_Union[PerplexitySuite, _Mapping]] = ...) -> None: ...

class MultipleChoiceSuite(_message.Message):
    __slots__ = ("format", "dataset", "builtin", "subjects", "num_few_shot", "limit_per_subject")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    NUM_FEW_SHOT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    format: MultipleChoiceFormat
    dataset: _common_pb2.ModelRef
    builtin: str
    subjects: _containers.RepeatedScalarFieldContainer[str]
    num_few_shot: int
    limit_per_subject: int
    def __init__(self, format: _Optional[_Union[MultipleChoiceFormat, str]] = ..., dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., builtin: _Optional[str] = ..., subjects: _Optional[_Iterable[str]] = ..., num_few_shot: _Optional[int] = ..., limit_per_subject: _Optional[int] = ...) -> None: ...

class GenerationQaSuite(_message.Message):
    __slots__ = ("dataset", "match_rule", "regex_pattern", "ignore_case", "max_new_tokens", "limit", "apply_chat_template", "builtin")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MATCH_RULE_FIELD_NUMBER: _ClassVar[int]
    REGEX_PATTERN_FIELD_NUMBER: _ClassVar[int]
    IGNORE_CASE_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    APPLY_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ModelRef
    match_rule: MatchRule
    regex_pattern: str
    ignore_case: bool
    max_new_tokens: int
    limit: int
    apply_chat_template: bool
    builtin: str
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., match_rule: _Optional[_Union[MatchRule, str]] = ..., regex_pattern: _Optional[str] = ..., ignore_case: _Optional[bool] = ..., max_new_tokens: _Optional[int] = ..., limit: _Optional[int] = ..., apply_chat_template: _Optional[bool] = ..., builtin: _Optional[str] = ...) -> None: ...

class PerplexitySuite(_message.Message):
    __slots__ = ("dataset", "max_seq_length", "stride", "limit")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.ModelRef
    max_seq_length: int
    stride: int
    limit: int
    def __init__(self, dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., max_seq_length: _Optional[int] = ..., stride: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class SubjectScore(_message.Message):
    __slots__ = ("correct", "total", "accuracy")
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    correct: int
    total: int
    accuracy: float
    def __init__(self, correct: _Optional[int] = ..., total: _Optional[int] = ..., accuracy: _Optional[float] = ...) -> None: ...

class EvalSuiteResult(_message.Message):
    __slots__ = ("suite_name", "metrics", "subjects", "num_samples", "wall_seconds", "items")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SubjectsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SubjectScore
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SubjectScore, _Mapping]] = ...) -> None: ...
    SUITE_NAME_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    suite_name: str
    metrics: _containers.ScalarMap[str, float]
    subjects: _containers.MessageMap[str, SubjectScore]
    num_samples: int
    wall_seconds: float
    items: _common_pb2.ModelRef
    def __init__(self, suite_name: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., subjects: _Optional[_Mapping[str, SubjectScore]] = ..., num_samples: _Optional[int] = ..., wall_seconds: _Optional[float] = ..., items: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class EvalReport(_message.Message):
    __slots__ = ("job_id", "target", "results", "create_time")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    target: EvalTarget
    results: _containers.RepeatedCompositeFieldContainer[EvalSuiteResult]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., target: _Optional[_Union[EvalTarget, _Mapping]] = ..., results: _Optional[_Iterable[_Union[EvalSuiteResult, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitEvalJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: EvalJobSpec
    def __init__(self, spec: _Optional[_Union[EvalJobSpec, _Mapping]] = ...) -> None: ...

class SubmitEvalJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: EvalJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[EvalJobSpec, _Mapping]] = ...) -> None: ...

class GetEvalJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetEvalJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: EvalJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[EvalJobSpec, _Mapping]] = ...) -> None: ...

class ListEvalJobsRequest(_message.Message):
    __slots__ = ("page", "filter")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    filter: _common_pb2.JobFilter
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.JobFilter, _Mapping]] = ...) -> None: ...

class ListEvalJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelEvalJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelEvalJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class WatchEvalJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchEvalJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _common_pb2.JobEvent
    def __init__(self, event: _Optional[_Union[_common_pb2.JobEvent, _Mapping]] = ...) -> None: ...

class GetEvalReportRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetEvalReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: EvalReport
    def __init__(self, report: _Optional[_Union[EvalReport, _Mapping]] = ...) -> None: ...

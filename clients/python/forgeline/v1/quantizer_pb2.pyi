from forgeline.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuantizeOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANTIZE_OPERATION_UNSPECIFIED: _ClassVar[QuantizeOperation]
    QUANTIZE_OPERATION_MERGE: _ClassVar[QuantizeOperation]
    QUANTIZE_OPERATION_QUANTIZE: _ClassVar[QuantizeOperation]

class QuantizeMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUANTIZE_METHOD_UNSPECIFIED: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_BNB_NF4: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_BNB_INT8: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_GPTQ: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_AWQ: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_FP8: _ClassVar[QuantizeMethod]
    QUANTIZE_METHOD_GGUF: _ClassVar[QuantizeMethod]

class GgufType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GGUF_TYPE_UNSPECIFIED: _ClassVar[GgufType]
    GGUF_TYPE_F16: _ClassVar[GgufType]
    GGUF_TYPE_Q8_0: _ClassVar[GgufType]
QUANTIZE_OPERATION_UNSPECIFIED: QuantizeOperation
QUANTIZE_OPERATION_MERGE: QuantizeOperation
QUANTIZE_OPERATION_QUANTIZE: QuantizeOperation
QUANTIZE_METHOD_UNSPECIFIED: QuantizeMethod
QUANTIZE_METHOD_BNB_NF4: QuantizeMethod
QUANTIZE_METHOD_BNB_INT8: QuantizeMethod
QUANTIZE_METHOD_GPTQ: QuantizeMethod
QUANTIZE_METHOD_AWQ: QuantizeMethod
QUANTIZE_METHOD_FP8: QuantizeMethod
QUANTIZE_METHOD_GGUF: QuantizeMethod
GGUF_TYPE_UNSPECIFIED: GgufType
GGUF_TYPE_F16: GgufType
GGUF_TYPE_Q8_0: GgufType

class QuantizeJobSpec(_message.Message):
    __slots__ = ("source", "operation", "method", "bits", "group_size", "symmetric", "calibration_dataset", "num_calibration_samples", "calibration_max_seq_length", "output_name", "resources", "labels", "gguf_type", "tuning_steps")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    SYMMETRIC_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DATASET_FIELD_NUMBER: _ClassVar[int]
    NUM_CALIBRATION_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GGUF_TYPE_FIELD_NUMBER: _ClassVar[int]
    TUNING_STEPS_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.ModelRef
    operation: QuantizeOperation
    method: QuantizeMethod
    bits: int
    group_size: int
    symmetric: bool
    calibration_dataset: _common_pb2.ModelRef
    num_calibration_samples: int
    calibration_max_seq_length: int
    output_name: str
    resources: _common_pb2.ResourceRequest
    labels: _containers.ScalarMap[str, str]
    gguf_type: GgufType
    tuning_steps: int
    def __init__(self, source: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., operation: _Optional[_Union[QuantizeOperation, str]] = ..., method: _Optional[_Union[QuantizeMethod, str]] = ..., bits: _Optional[int] = ..., group_size: _Optional[int] = ..., symmetric: _Optional[bool] = ..., calibration_dataset: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., num_calibration_samples: _Optional[int] = ..., calibration_max_seq_length: _Optional[int] = ..., output_name: _Optional[str] = ..., resources: _Optional[_Union[_common_pb2.ResourceRequest, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., gguf_type: _Optional[_Union[GgufType, str]] = ..., tuning_steps: _Optional[int] = ...) -> None: ...

class SubmitQuantizeJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: QuantizeJobSpec
    def __init__(self, spec: _Optional[_Union[QuantizeJobSpec, _Mapping]] = ...) -> None: ...

class SubmitQuantizeJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: QuantizeJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[QuantizeJobSpec, _Mapping]] = ...) -> None: ...

class GetQuantizeJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetQuantizeJobResponse(_message.Message):
    __slots__ = ("job", "spec")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    spec: QuantizeJobSpec
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., spec: _Optional[_Union[QuantizeJobSpec, _Mapping]] = ...) -> None: ...

class ListQuantizeJobsRequest(_message.Message):
    __slots__ = ("page", "filter")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    filter: _common_pb2.JobFilter
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.JobFilter, _Mapping]] = ...) -> None: ...

class ListQuantizeJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelQuantizeJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelQuantizeJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class WatchQuantizeJobRequest(_message.Message):
    __slots__ = ("job_id", "after_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchQuantizeJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _common_pb2.JobEvent
    def __init__(self, event: _Optional[_Union[_common_pb2.JobEvent, _Mapping]] = ...) -> None: ...

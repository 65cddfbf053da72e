from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    PENDING: _ClassVar[RunState]
    RUNNING: _ClassVar[RunState]
    COMPLETED: _ClassVar[RunState]
    PARTIAL: _ClassVar[RunState]
    FAILED: _ClassVar[RunState]
    CANCELLED: _ClassVar[RunState]
RUN_STATE_UNSPECIFIED: RunState
PENDING: RunState
RUNNING: RunState
COMPLETED: RunState
PARTIAL: RunState
FAILED: RunState
CANCELLED: RunState

class AgentMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "result_batch", "assignment_update")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_BATCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_UPDATE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    result_batch: ResultBatch
    assignment_update: AssignmentUpdate
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., result_batch: _Optional[_Union[ResultBatch, _Mapping]] = ..., assignment_update: _Optional[_Union[AssignmentUpdate, _Mapping]] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("welcome", "heartbeat_reply", "assignment", "cancel", "batch_ack", "goodbye")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_REPLY_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    BATCH_ACK_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    heartbeat_reply: HeartbeatReply
    assignment: Assignment
    cancel: CancelAssignment
    batch_ack: BatchAck
    goodbye: Goodbye
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., heartbeat_reply: _Optional[_Union[HeartbeatReply, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelAssignment, _Mapping]] = ..., batch_ack: _Optional[_Union[BatchAck, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id", "labels", "version", "capacity", "hostname", "active_assignment_ids")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ASSIGNMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    version: str
    capacity: AgentCapacity
    hostname: str
    active_assignment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., version: _Optional[str] = ..., capacity: _Optional[_Union[AgentCapacity, _Mapping]] = ..., hostname: _Optional[str] = ..., active_assignment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentCapacity(_message.Message):
    __slots__ = ("max_concurrency", "cpu_count", "worker_processes")
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    WORKER_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    max_concurrency: int
    cpu_count: int
    worker_processes: int
    def __init__(self, max_concurrency: _Optional[int] = ..., cpu_count: _Optional[int] = ..., worker_processes: _Optional[int] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("controller_version", "heartbeat_interval_s", "cancelled_assignment_ids")
    CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_ASSIGNMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    controller_version: str
    heartbeat_interval_s: float
    cancelled_assignment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, controller_version: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., cancelled_assignment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_unix_ns", "clock_offset_ns", "clock_offset_uncertainty_ms", "load")
    SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_UNCERTAINTY_MS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ns: int
    clock_offset_ns: int
    clock_offset_uncertainty_ms: float
    load: AgentLoad
    def __init__(self, sent_unix_ns: _Optional[int] = ..., clock_offset_ns: _Optional[int] = ..., clock_offset_uncertainty_ms: _Optional[float] = ..., load: _Optional[_Union[AgentLoad, _Mapping]] = ...) -> None: ...

class AgentLoad(_message.Message):
    __slots__ = ("requests_in_flight", "event_loop_lag_ms", "cpu_percent")
    REQUESTS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOOP_LAG_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    requests_in_flight: int
    event_loop_lag_ms: float
    cpu_percent: float
    def __init__(self, requests_in_flight: _Optional[int] = ..., event_loop_lag_ms: _Optional[float] = ..., cpu_percent: _Optional[float] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("agent_sent_unix_ns", "controller_unix_ns")
    AGENT_SENT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    agent_sent_unix_ns: int
    controller_unix_ns: int
    def __init__(self, agent_sent_unix_ns: _Optional[int] = ..., controller_unix_ns: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("run_id", "assignment_id", "target", "plan", "share", "start_at_unix_ns", "traceparent", "provider_secrets")
    class ProviderSecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    START_AT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_SECRETS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    assignment_id: str
    target: str
    plan: Plan
    share: LoadShare
    start_at_unix_ns: int
    traceparent: str
    provider_secrets: _containers.ScalarMap[str, str]
    def __init__(self, run_id: _Optional[str] = ..., assignment_id: _Optional[str] = ..., target: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., share: _Optional[_Union[LoadShare, _Mapping]] = ..., start_at_unix_ns: _Optional[int] = ..., traceparent: _Optional[str] = ..., provider_secrets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LoadShare(_message.Message):
    __slots__ = ("agent_index", "agent_count", "concurrency", "rate_per_s", "stages", "request_count", "max_in_flight")
    AGENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    AGENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    agent_index: int
    agent_count: int
    concurrency: int
    rate_per_s: float
    stages: _containers.RepeatedCompositeFieldContainer[StageShare]
    request_count: int
    max_in_flight: int
    def __init__(self, agent_index: _Optional[int] = ..., agent_count: _Optional[int] = ..., concurrency: _Optional[int] = ..., rate_per_s: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StageShare, _Mapping]]] = ..., request_count: _Optional[int] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class StageShare(_message.Message):
    __slots__ = ("concurrency", "rate_per_s")
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    rate_per_s: float
    def __init__(self, concurrency: _Optional[int] = ..., rate_per_s: _Optional[float] = ...) -> None: ...

class CancelAssignment(_message.Message):
    __slots__ = ("assignment_id", "reason")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    reason: str
    def __init__(self, assignment_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("assignment_id", "seq", "records")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    seq: int
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, assignment_id: _Optional[str] = ..., seq: _Optional[int] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("assignment_id", "seq")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    seq: int
    def __init__(self, assignment_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class AssignmentUpdate(_message.Message):
    __slots__ = ("assignment_id", "state", "message", "final_batch_seq", "records_total", "diagnosis")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[AssignmentUpdate.State]
        ACCEPTED: _ClassVar[AssignmentUpdate.State]
        RUNNING: _ClassVar[AssignmentUpdate.State]
        FINISHED: _ClassVar[AssignmentUpdate.State]
        FAILED: _ClassVar[AssignmentUpdate.State]
        CANCELLED: _ClassVar[AssignmentUpdate.State]
    STATE_UNSPECIFIED: AssignmentUpdate.State
    ACCEPTED: AssignmentUpdate.State
    RUNNING: AssignmentUpdate.State
    FINISHED: AssignmentUpdate.State
    FAILED: AssignmentUpdate.State
    CANCELLED: AssignmentUpdate.State
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINAL_BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    state: AssignmentUpdate.State
    message: str
    final_batch_seq: int
    records_total: int
    diagnosis: AgentDiagnosis
    def __init__(self, assignment_id: _Optional[str] = ..., state: _Optional[_Union[AssignmentUpdate.State, str]] = ..., message: _Optional[str] = ..., final_batch_seq: _Optional[int] = ..., records_total: _Optional[int] = ..., diagnosis: _Optional[_Union[AgentDiagnosis, _Mapping]] = ...) -> None: ...

class AgentDiagnosis(_message.Message):
    __slots__ = ("start_lag_p99_ms", "event_loop_lag_max_ms", "cpu_percent_max", "requests_delayed_by_cap", "requests_dropped_by_cap", "verdict", "event_loop_lag_p99_ms", "requests_failed_locally")
    START_LAG_P99_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOOP_LAG_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_MAX_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DELAYED_BY_CAP_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DROPPED_BY_CAP_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOOP_LAG_P99_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_LOCALLY_FIELD_NUMBER: _ClassVar[int]
    start_lag_p99_ms: float
    event_loop_lag_max_ms: float
    cpu_percent_max: float
    requests_delayed_by_cap: int
    requests_dropped_by_cap: int
    verdict: str
    event_loop_lag_p99_ms: float
    requests_failed_locally: int
    def __init__(self, start_lag_p99_ms: _Optional[float] = ..., event_loop_lag_max_ms: _Optional[float] = ..., cpu_percent_max: _Optional[float] = ..., requests_delayed_by_cap: _Optional[int] = ..., requests_dropped_by_cap: _Optional[int] = ..., verdict: _Optional[str] = ..., event_loop_lag_p99_ms: _Optional[float] = ..., requests_failed_locally: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("run_id", "assignment_id", "agent_id", "target", "provider", "model", "index", "stage_index", "warmup", "scheduled_unix_ns", "start_unix_ns", "start_lag_ms", "dns_ms", "connect_ms", "tls_ms", "connection_reused", "ttfb_ms", "ttft_ms", "ttft_content_ms", "e2e_ms", "itl_count", "itl_mean_ms", "itl_p50_ms", "itl_p90_ms", "itl_max_ms", "tpot_ms", "output_tokens", "output_tokens_estimated", "input_tokens", "reasoning_tokens", "content_chunks", "bytes_received", "http_status", "http_version", "remote_ip", "finish_reason", "response_model", "response_id", "error_class", "error_detail", "error_phase", "retry_after_s", "rate_limit_headers", "attempt", "trace_id", "span_id", "clock_offset_ns")
    class RateLimitHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    START_LAG_MS_FIELD_NUMBER: _ClassVar[int]
    DNS_MS_FIELD_NUMBER: _ClassVar[int]
    CONNECT_MS_FIELD_NUMBER: _ClassVar[int]
    TLS_MS_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_REUSED_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_CONTENT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    ITL_COUNT_FIELD_NUMBER: _ClassVar[int]
    ITL_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    ITL_P50_MS_FIELD_NUMBER: _ClassVar[int]
    ITL_P90_MS_FIELD_NUMBER: _ClassVar[int]
    ITL_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    TPOT_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    HTTP_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOTE_IP_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    ERROR_PHASE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_HEADERS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    assignment_id: str
    agent_id: str
    target: str
    provider: str
    model: str
    index: int
    stage_index: int
    warmup: bool
    scheduled_unix_ns: int
    start_unix_ns: int
    start_lag_ms: float
    dns_ms: float
    connect_ms: float
    tls_ms: float
    connection_reused: bool
    ttfb_ms: float
    ttft_ms: float
    ttft_content_ms: float
    e2e_ms: float
    itl_count: int
    itl_mean_ms: float
    itl_p50_ms: float
    itl_p90_ms: float
    itl_max_ms: float
    tpot_ms: float
    output_tokens: int
    output_tokens_estimated: bool
    input_tokens: int
    reasoning_tokens: int
    content_chunks: int
    bytes_received: int
    http_status: int
    http_version: str
    remote_ip: str
    finish_reason: str
    response_model: str
    response_id: str
    error_class: str
    error_detail: str
    error_phase: str
    retry_after_s: float
    rate_limit_headers: _containers.ScalarMap[str, str]
    attempt: int
    trace_id: str
    span_id: str
    clock_offset_ns: int
    def __init__(self, run_id: _Optional[str] = ..., assignment_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., target: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., index: _Optional[int] = ..., stage_index: _Optional[int] = ..., warmup: _Optional[bool] = ..., scheduled_unix_ns: _Optional[int] = ..., start_unix_ns: _Optional[int] = ..., start_lag_ms: _Optional[float] = ..., dns_ms: _Optional[float] = ..., connect_ms: _Optional[float] = ..., tls_ms: _Optional[float] = ..., connection_reused: _Optional[bool] = ..., ttfb_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., ttft_content_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., itl_count: _Optional[int] = ..., itl_mean_ms: _Optional[float] = ..., itl_p50_ms: _Optional[float] = ..., itl_p90_ms: _Optional[float] = ..., itl_max_ms: _Optional[float] = ..., tpot_ms: _Optional[float] = ..., output_tokens: _Optional[int] = ..., output_tokens_estimated: _Optional[bool] = ..., input_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., content_chunks: _Optional[int] = ..., bytes_received: _Optional[int] = ..., http_status: _Optional[int] = ..., http_version: _Optional[str] = ..., remote_ip: _Optional[str] = ..., finish_reason: _Optional[str] = ..., response_model: _Optional[str] = ..., response_id: _Optional[str] = ..., error_class: _Optional[str] = ..., error_detail: _Optional[str] = ..., error_phase: _Optional[str] = ..., retry_after_s: _Optional[float] = ..., rate_limit_headers: _Optional[_Mapping[str, str]] = ..., attempt: _Optional[int] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., clock_offset_ns: _Optional[int] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("name", "providers", "request", "load", "targets", "timeouts", "thresholds", "controller_secrets", "source_yaml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_SECRETS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_YAML_FIELD_NUMBER: _ClassVar[int]
    name: str
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    request: RequestSpec
    load: LoadSpec
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    timeouts: Timeouts
    thresholds: _containers.RepeatedCompositeFieldContainer[Threshold]
    controller_secrets: bool
    source_yaml: str
    def __init__(self, name: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ..., request: _Optional[_Union[RequestSpec, _Mapping]] = ..., load: _Optional[_Union[LoadSpec, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., timeouts: _Optional[_Union[Timeouts, _Mapping]] = ..., thresholds: _Optional[_Iterable[_Union[Threshold, _Mapping]]] = ..., controller_secrets: _Optional[bool] = ..., source_yaml: _Optional[str] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "kind", "base_url", "model", "api_key_env", "headers", "extra_body", "proxy_url", "api_version", "deployment", "preset")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_BODY_FIELD_NUMBER: _ClassVar[int]
    PROXY_URL_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    base_url: str
    model: str
    api_key_env: str
    headers: _containers.ScalarMap[str, str]
    extra_body: _struct_pb2.Struct
    proxy_url: str
    api_version: str
    deployment: str
    preset: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., base_url: _Optional[str] = ..., model: _Optional[str] = ..., api_key_env: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., extra_body: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., proxy_url: _Optional[str] = ..., api_version: _Optional[str] = ..., deployment: _Optional[str] = ..., preset: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class RequestSpec(_message.Message):
    __slots__ = ("messages", "max_tokens", "stream", "temperature", "include_usage", "new_connection_per_request")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_USAGE_FIELD_NUMBER: _ClassVar[int]
    NEW_CONNECTION_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    max_tokens: int
    stream: bool
    temperature: float
    include_usage: bool
    new_connection_per_request: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., stream: _Optional[bool] = ..., temperature: _Optional[float] = ..., include_usage: _Optional[bool] = ..., new_connection_per_request: _Optional[bool] = ...) -> None: ...

class LoadSpec(_message.Message):
    __slots__ = ("mode", "concurrency", "rate_per_s", "stages", "duration_s", "request_count", "warmup_s", "max_in_flight", "overflow", "retry", "max_requests", "seed")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[LoadSpec.Mode]
        CLOSED: _ClassVar[LoadSpec.Mode]
        CONSTANT: _ClassVar[LoadSpec.Mode]
        POISSON: _ClassVar[LoadSpec.Mode]
    MODE_UNSPECIFIED: LoadSpec.Mode
    CLOSED: LoadSpec.Mode
    CONSTANT: LoadSpec.Mode
    POISSON: LoadSpec.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    WARMUP_S_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    mode: LoadSpec.Mode
    concurrency: int
    rate_per_s: float
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    duration_s: float
    request_count: int
    warmup_s: float
    max_in_flight: int
    overflow: str
    retry: RetryPolicy
    max_requests: int
    seed: int
    def __init__(self, mode: _Optional[_Union[LoadSpec.Mode, str]] = ..., concurrency: _Optional[int] = ..., rate_per_s: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., duration_s: _Optional[float] = ..., request_count: _Optional[int] = ..., warmup_s: _Optional[float] = ..., max_in_flight: _Optional[int] = ..., overflow: _Optional[str] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., max_requests: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("concurrency", "rate_per_s", "duration_s", "ramp_s")
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    RAMP_S_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    rate_per_s: float
    duration_s: float
    ramp_s: float
    def __init__(self, concurrency: _Optional[int] = ..., rate_per_s: _Optional[float] = ..., duration_s: _Optional[float] = ..., ramp_s: _Optional[float] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "backoff_s", "on_error_classes")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_S_FIELD_NUMBER: _ClassVar[int]
    ON_ERROR_CLASSES_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    backoff_s: float
    on_error_classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_attempts: _Optional[int] = ..., backoff_s: _Optional[float] = ..., on_error_classes: _Optional[_Iterable[str]] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("name", "selector")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Timeouts(_message.Message):
    __slots__ = ("connect_s", "ttft_s", "idle_s", "total_s")
    CONNECT_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    connect_s: float
    ttft_s: float
    idle_s: float
    total_s: float
    def __init__(self, connect_s: _Optional[float] = ..., ttft_s: _Optional[float] = ..., idle_s: _Optional[float] = ..., total_s: _Optional[float] = ...) -> None: ...

class Threshold(_message.Message):
    __slots__ = ("metric", "op", "value", "provider", "target")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    metric: str
    op: str
    value: float
    provider: str
    target: str
    def __init__(self, metric: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[float] = ..., provider: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "plan_name", "state", "reason", "created_unix_ns", "start_at_unix_ns", "ended_unix_ns", "assignments", "trace_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    START_AT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    plan_name: str
    state: RunState
    reason: str
    created_unix_ns: int
    start_at_unix_ns: int
    ended_unix_ns: int
    assignments: _containers.RepeatedCompositeFieldContainer[AssignmentInfo]
    trace_id: str
    def __init__(self, run_id: _Optional[str] = ..., plan_name: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., reason: _Optional[str] = ..., created_unix_ns: _Optional[int] = ..., start_at_unix_ns: _Optional[int] = ..., ended_unix_ns: _Optional[int] = ..., assignments: _Optional[_Iterable[_Union[AssignmentInfo, _Mapping]]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class AssignmentInfo(_message.Message):
    __slots__ = ("assignment_id", "agent_id", "target", "state", "records_stored", "message")
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_STORED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    assignment_id: str
    agent_id: str
    target: str
    state: AssignmentUpdate.State
    records_stored: int
    message: str
    def __init__(self, assignment_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., target: _Optional[str] = ..., state: _Optional[_Union[AssignmentUpdate.State, str]] = ..., records_stored: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("run", "targets", "elapsed_s")
    RUN_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    targets: _containers.RepeatedCompositeFieldContainer[TargetProgress]
    elapsed_s: float
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[TargetProgress, _Mapping]]] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class TargetProgress(_message.Message):
    __slots__ = ("target", "requests_done", "errors", "rate_per_s")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DONE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_S_FIELD_NUMBER: _ClassVar[int]
    target: str
    requests_done: int
    errors: int
    rate_per_s: float
    def __init__(self, target: _Optional[str] = ..., requests_done: _Optional[int] = ..., errors: _Optional[int] = ..., rate_per_s: _Optional[float] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("agent_id", "labels", "version", "hostname", "peer", "connected_unix_ns", "last_heartbeat_unix_ns", "clock_offset_ns", "load", "assignment_ids")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_NS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    version: str
    hostname: str
    peer: str
    connected_unix_ns: int
    last_heartbeat_unix_ns: int
    clock_offset_ns: int
    load: AgentLoad
    assignment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., version: _Optional[str] = ..., hostname: _Optional[str] = ..., peer: _Optional[str] = ..., connected_unix_ns: _Optional[int] = ..., last_heartbeat_unix_ns: _Optional[int] = ..., clock_offset_ns: _Optional[int] = ..., load: _Optional[_Union[AgentLoad, _Mapping]] = ..., assignment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("run", "plan", "summaries", "threshold_results", "agent_diagnoses", "timeline")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_RESULTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    run: RunInfo
    plan: Plan
    summaries: _containers.RepeatedCompositeFieldContainer[Summary]
    threshold_results: _containers.RepeatedCompositeFieldContainer[ThresholdResult]
    agent_diagnoses: _containers.RepeatedCompositeFieldContainer[AgentDiagnosisReport]
    timeline: _containers.RepeatedCompositeFieldContainer[TimelineBucket]
    def __init__(self, run: _Optional[_Union[RunInfo, _Mapping]] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., summaries: _Optional[_Iterable[_Union[Summary, _Mapping]]] = ..., threshold_results: _Optional[_Iterable[_Union[ThresholdResult, _Mapping]]] = ..., agent_diagnoses: _Optional[_Iterable[_Union[AgentDiagnosisReport, _Mapping]]] = ..., timeline: _Optional[_Iterable[_Union[TimelineBucket, _Mapping]]] = ...) -> None: ...

class Distribution(_message.Message):
    __slots__ = ("count", "mean", "p50", "p90", "p95", "p99", "max", "min", "stddev", "mean_ci95_low", "mean_ci95_high")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI95_LOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_CI95_HIGH_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    min: float
    stddev: float
    mean_ci95_low: float
    mean_ci95_high: float
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., p50: _Optional[float] = ..., p90: _Optional[float] = ..., p95: _Optional[float] = ..., p99: _Optional[float] = ..., max: _Optional[float] = ..., min: _Optional[float] = ..., stddev: _Optional[float] = ..., mean_ci95_low: _Optional[float] = ..., mean_ci95_high: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("provider", "target", "model", "requests", "successes", "errors", "error_rate", "ttft_ms", "e2e_ms", "ttfb_ms", "tpot_ms", "start_lag_ms", "error_classes", "output_tokens_mean", "output_tokens_estimated", "throughput_rps", "score", "not_available", "not_available_detail", "warmup_requests", "sample_error_details", "cancelled")
    class ErrorClassesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    TPOT_MS_FIELD_NUMBER: _ClassVar[int]
    START_LAG_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASSES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_MEAN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_RPS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_AVAILABLE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    WARMUP_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ERROR_DETAILS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    provider: str
    target: str
    model: str
    requests: int
    successes: int
    errors: int
    error_rate: float
    ttft_ms: Distribution
    e2e_ms: Distribution
    ttfb_ms: Distribution
    tpot_ms: Distribution
    start_lag_ms: Distribution
    error_classes: _containers.ScalarMap[str, int]
    output_tokens_mean: float
    output_tokens_estimated: bool
    throughput_rps: float
    score: float
    not_available: bool
    not_available_detail: str
    warmup_requests: int
    sample_error_details: _containers.RepeatedScalarFieldContainer[str]
    cancelled: int
    def __init__(self, provider: _Optional[str] = ..., target: _Optional[str] = ..., model: _Optional[str] = ..., requests: _Optional[int] = ..., successes: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., ttft_ms: _Optional[_Union[Distribution, _Mapping]] = ..., e2e_ms: _Optional[_Union[Distribution, _Mapping]] = ..., ttfb_ms: _Optional[_Union[Distribution, _Mapping]] = ..., tpot_ms: _Optional[_Union[Distribution, _Mapping]] = ..., start_lag_ms: _Optional[_Union[Distribution, _Mapping]] = ..., error_classes: _Optional[_Mapping[str, int]] = ..., output_tokens_mean: _Optional[float] = ..., output_tokens_estimated: _Optional[bool] = ..., throughput_rps: _Optional[float] = ..., score: _Optional[float] = ..., not_available: _Optional[bool] = ..., not_available_detail: _Optional[str] = ..., warmup_requests: _Optional[int] = ..., sample_error_details: _Optional[_Iterable[str]] = ..., cancelled: _Optional[int] = ...) -> None: ...

class ThresholdResult(_message.Message):
    __slots__ = ("threshold", "provider", "target", "observed", "passed")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    threshold: Threshold
    provider: str
    target: str
    observed: float
    passed: bool
    def __init__(self, threshold: _Optional[_Union[Threshold, _Mapping]] = ..., provider: _Optional[str] = ..., target: _Optional[str] = ..., observed: _Optional[float] = ..., passed: _Optional[bool] = ...) -> None: ...

class AgentDiagnosisReport(_message.Message):
    __slots__ = ("agent_id", "assignment_id", "target", "diagnosis")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    assignment_id: str
    target: str
    diagnosis: AgentDiagnosis
    def __init__(self, agent_id: _Optional[str] = ..., assignment_id: _Optional[str] = ..., target: _Optional[str] = ..., diagnosis: _Optional[_Union[AgentDiagnosis, _Mapping]] = ...) -> None: ...

class TimelineBucket(_message.Message):
    __slots__ = ("provider", "target", "bucket_start_unix_ns", "bucket_s", "requests", "errors", "ttft_p50_ms", "e2e_p50_ms")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_S_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TTFT_P50_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_P50_MS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    target: str
    bucket_start_unix_ns: int
    bucket_s: float
    requests: int
    errors: int
    ttft_p50_ms: float
    e2e_p50_ms: float
    def __init__(self, provider: _Optional[str] = ..., target: _Optional[str] = ..., bucket_start_unix_ns: _Optional[int] = ..., bucket_s: _Optional[float] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., ttft_p50_ms: _Optional[float] = ..., e2e_p50_ms: _Optional[float] = ...) -> None: ...

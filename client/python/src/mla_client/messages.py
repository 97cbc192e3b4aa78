"""Typed, immutable views of the service's messages.

Each dataclass mirrors a message of proto/mla/v1/inference.proto (the field comments
there are the reference for units and ranges), so callers need not touch protobuf.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, List, Optional, Type, TypeVar, cast

from mla_client._proto import health_pb2, inference_pb2

_T = TypeVar("_T")


def _scalars_from(cls: Type[_T], message: Any) -> _T:
    """Builds dataclass `cls` from the same-named scalar fields of `message`."""
    fields = dataclasses.fields(cast(Any, cls))
    return cls(**{f.name: getattr(message, f.name) for f in fields})


class FinishReason(str, enum.Enum):
    """Why a generation ended."""

    UNSPECIFIED = "unspecified"
    STOP = "stop"  # End-of-sequence or a stop token id.
    LENGTH = "length"  # max_tokens or the model's context reached.
    STOP_SEQUENCE = "stop_sequence"  # A stop string matched.
    ABORT = "abort"  # Abort, cancellation or server shutdown.

    @classmethod
    def from_proto(cls, value: int) -> "FinishReason":
        return _FINISH_REASONS.get(value, cls.UNSPECIFIED)


_FINISH_REASONS: Dict[int, FinishReason] = {
    inference_pb2.FINISH_REASON_STOP: FinishReason.STOP,
    inference_pb2.FINISH_REASON_LENGTH: FinishReason.LENGTH,
    inference_pb2.FINISH_REASON_STOP_SEQUENCE: FinishReason.STOP_SEQUENCE,
    inference_pb2.FINISH_REASON_ABORT: FinishReason.ABORT,
}


class HealthStatus(str, enum.Enum):
    """grpc.health.v1 serving status."""

    UNKNOWN = "UNKNOWN"
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"

    @classmethod
    def from_proto(cls, value: int) -> "HealthStatus":
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(value)
        return cls(name) if name in cls.__members__ else cls.UNKNOWN


@dataclasses.dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability with its most likely alternatives (most likely first)."""

    token_id: int
    logprob: float
    top_token_ids: List[int]
    top_logprobs: List[float]

    @classmethod
    def from_proto(cls, m: inference_pb2.TokenLogprob) -> "TokenLogprob":
        return cls(m.token_id, m.logprob, list(m.top_token_ids), list(m.top_logprobs))


@dataclasses.dataclass(frozen=True)
class Usage:
    """Token counts of a finished request."""

    prompt_tokens: int
    cached_prompt_tokens: int  # Prompt tokens served from the prefix cache.
    completion_tokens: int


@dataclasses.dataclass(frozen=True)
class Timings:
    """Latencies of a finished request, in seconds from its arrival."""

    queue_seconds: float
    time_to_first_token_seconds: float
    total_seconds: float


@dataclasses.dataclass(frozen=True)
class IndexerRecall:
    """DeepSeek-V3.2: how many watched prompt positions one layer's indexer selected."""

    layer: int
    selected: int  # Watched positions among the indexer's top-k (all of them when dense).
    watched: int  # Watched positions the query row could see.


@dataclasses.dataclass(frozen=True)
class Finished:
    """How a request ended; carried by the last chunk of a stream."""

    reason: FinishReason
    usage: Usage
    timings: Timings
    stop_sequence: str  # The matched stop string for FinishReason.STOP_SEQUENCE.
    # One per layer when the request set indexer_watch and the model is DeepSeek-V3.2.
    indexer_recall: List[IndexerRecall] = dataclasses.field(default_factory=list)

    @classmethod
    def from_proto(cls, m: inference_pb2.Finished) -> "Finished":
        return cls(FinishReason.from_proto(m.reason), _scalars_from(Usage, m.usage),
                   _scalars_from(Timings, m.timings), m.stop_sequence,
                   [_scalars_from(IndexerRecall, r) for r in m.indexer_recall])


@dataclasses.dataclass(frozen=True)
class GenerateChunk:
    """One streamed message: the tokens generated since the previous chunk."""

    request_id: str
    token_ids: List[int]
    text: str  # Text of token_ids when the model has a tokenizer, else "".
    logprobs: List[TokenLogprob]  # One per token when logprobs > 0 was requested.
    prompt_logprobs: List[TokenLogprob]  # First chunk only, when requested.
    finished: Optional[Finished]  # Set on the last chunk only.

    @classmethod
    def from_proto(cls, m: inference_pb2.GenerateResponse) -> "GenerateChunk":
        return cls(
            request_id=m.request_id,
            token_ids=list(m.token_ids),
            text=m.text,
            logprobs=[TokenLogprob.from_proto(p) for p in m.logprobs],
            prompt_logprobs=[TokenLogprob.from_proto(p) for p in m.prompt_logprobs],
            finished=Finished.from_proto(m.finished) if m.HasField("finished") else None,
        )


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The served model's geometry, cache layout and device."""

    model_name: str
    architecture: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    vocab_size: int
    max_context: int
    weight_dtype: str
    device: str
    kv_block_size: int
    kv_num_blocks: int
    kv_cache_dtype: str
    kv_bytes_per_token: int
    mha_bytes_per_token: int
    n_routed_experts: int
    num_experts_per_tok: int
    n_shared_experts: int
    has_tokenizer: bool  # Text prompts, stop strings, tokenize/detokenize and chunk text work.
    has_chat_template: bool  # `messages` prompts work.
    indexer_key_dtype: str  # DeepSeek-V3.2's cached indexer keys; "" for other models.

    @classmethod
    def from_proto(cls, m: inference_pb2.ModelInfo) -> "ModelInfo":
        return _scalars_from(cls, m)


@dataclasses.dataclass(frozen=True)
class Load:
    """The server's current queue and cache occupancy.

    kv_blocks_used counts blocks held by live requests; blocks that only keep a
    reusable prefix are free and counted in kv_blocks_cached_free instead.
    """

    num_requests_running: int
    num_requests_waiting: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_blocks_free: int
    kv_bytes_total: int
    kv_bytes_used: int
    kv_blocks_cached_free: int

    @classmethod
    def from_proto(cls, m: inference_pb2.Load) -> "Load":
        return _scalars_from(cls, m)

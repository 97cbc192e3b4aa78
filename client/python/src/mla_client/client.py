"""A thin, typed, synchronous client for mla.v1.Inference and grpc.health.v1.Health."""

from __future__ import annotations

from types import TracebackType
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type,
                    TypeVar, Union)

import grpc

from mla_client._proto import health_pb2, health_pb2_grpc, inference_pb2, inference_pb2_grpc
from mla_client.errors import MlaError
from mla_client.messages import HealthStatus, Load, ModelInfo
from mla_client.stream import GenerateStream

_R = TypeVar("_R")
# A chat message: a (role, content) pair or a mapping with "role" and "content".
ChatMessage = Union[Tuple[str, str], Dict[str, str]]


class Client:
    """Connects to one mla-server.

    Args:
        target: "host:port" of the server.
        token: sent as "authorization: Bearer <token>" on every call when set (for a
            gateway in front of the server; the server itself does not check it).
        root_certificates: PEM bytes; when set the channel uses TLS with these roots.
        tls: use TLS with the system's roots (implied by root_certificates).
        timeout: default deadline of every call in seconds (None: no deadline). For
            generate() it bounds the whole stream.
        options: extra grpc channel options, e.g. [("grpc.max_receive_message_length", n)].

    The client is thread-safe; close() it (or use it as a context manager) when done.
    """

    def __init__(self, target: str, *, token: Optional[str] = None,
                 root_certificates: Optional[bytes] = None, tls: bool = False,
                 timeout: Optional[float] = None,
                 options: Sequence[Tuple[str, Any]] = ()) -> None:
        if root_certificates is not None or tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=list(options))
        else:
            self._channel = grpc.insecure_channel(target, options=list(options))
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        self._timeout = timeout
        self._inference = inference_pb2_grpc.InferenceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def close(self) -> None:
        """Closes the channel; streams still open are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def _call(self, method: Callable[..., _R], request: Any, timeout: Optional[float]) -> _R:
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout,
                          metadata=self._metadata)
        except grpc.RpcError as error:
            raise MlaError.from_rpc_error(error) from None

    def generate(
        self,
        prompt_ids: Optional[Iterable[int]] = None,
        *,
        text: Optional[str] = None,
        messages: Optional[Sequence[ChatMessage]] = None,
        add_generation_prompt: bool = True,
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: Optional[float] = None,
        min_p: float = 0.0,
        seed: Optional[int] = None,
        stop: Sequence[str] = (),
        stop_token_ids: Sequence[int] = (),
        ignore_eos: bool = False,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        logit_bias: Optional[Mapping[int, float]] = None,
        min_tokens: int = 0,
        logprobs: int = 0,
        prompt_logprobs: Optional[int] = None,
        priority: int = 0,
        cache_salt: str = "",
        indexer_watch: Optional[Tuple[int, int]] = None,
        request_id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> GenerateStream:
        """Starts a generation and returns the stream of its chunks.

        Exactly one of prompt_ids, text (needs a tokenizer) or messages (needs a chat
        template) is the prompt. max_tokens None means up to the model's context;
        temperature 0 is greedy; top_k 0 and top_p None disable those filters; seed makes
        sampling repeatable; stop strings need a tokenizer. presence_penalty and
        frequency_penalty ([-2, 2]), repetition_penalty (> 0, 1 = off) and logit_bias
        ({token id: bias in [-100, 100]}) adjust the logits before sampling, as OpenAI's
        and vLLM's do; reported logprobs stay the model's. min_tokens holds back the stop
        token ids and end-of-sequence until that many tokens were generated. request_id (unique among live
        requests) lets another client abort() the request; the server assigns one when
        None. indexer_watch (begin, end) asks a DeepSeek-V3.2 server which of those prompt
        token positions its sparse-attention indexer selected for the first generated
        token (finished.indexer_recall, per layer). The last chunk carries `finished`. Errors (e.g. INVALID_ARGUMENT for a bad
        field) raise MlaError while iterating.
        """
        given = [p is not None for p in (prompt_ids, text, messages)]
        if sum(given) != 1:
            raise ValueError("pass exactly one of prompt_ids, text or messages")
        request = inference_pb2.GenerateRequest(
            request_id=request_id or "", logprobs=logprobs, priority=priority,
            cache_salt=cache_salt)
        if prompt_ids is not None:
            request.token_ids.ids.extend(prompt_ids)
        elif text is not None:
            request.text = text
        else:
            request.messages.add_generation_prompt = add_generation_prompt
            request.messages.messages.extend(_chat_message(m) for m in messages or ())
        if prompt_logprobs is not None:
            request.prompt_logprobs = prompt_logprobs
        if indexer_watch is not None:
            request.indexer_watch.begin, request.indexer_watch.end = indexer_watch
        sampling = request.sampling
        sampling.max_tokens = max_tokens or 0  # 0: up to the model's context.
        sampling.temperature = temperature
        sampling.top_k = top_k
        sampling.top_p = top_p if top_p is not None else 0.0  # 0: disabled.
        sampling.min_p = min_p
        if seed is not None:
            sampling.seed = seed
            sampling.has_seed = True
        sampling.stop.extend(stop)
        sampling.stop_token_ids.extend(stop_token_ids)
        sampling.ignore_eos = ignore_eos
        sampling.presence_penalty = presence_penalty
        sampling.frequency_penalty = frequency_penalty
        sampling.repetition_penalty = repetition_penalty
        for token, bias in (logit_bias or {}).items():
            sampling.logit_bias[token] = bias
        sampling.min_tokens = min_tokens
        call = self._inference.Generate(
            request, timeout=self._timeout if timeout is None else timeout,
            metadata=self._metadata)
        return GenerateStream(call, request_id)

    def abort(self, request_id: str, *, timeout: Optional[float] = None) -> None:
        """Aborts a live request by id; MlaError NOT_FOUND when none is live."""
        self._call(self._inference.Abort, inference_pb2.AbortRequest(request_id=request_id),
                   timeout)

    def tokenize(self, text: str, *, add_special_tokens: bool = False,
                 timeout: Optional[float] = None) -> List[int]:
        """Text to token ids (FAILED_PRECONDITION when the model has no tokenizer)."""
        request = inference_pb2.TokenizeRequest(text=text, add_special_tokens=add_special_tokens)
        return list(self._call(self._inference.Tokenize, request, timeout).token_ids)

    def detokenize(self, token_ids: Iterable[int], *, skip_special_tokens: bool = False,
                   timeout: Optional[float] = None) -> str:
        """Token ids to text (FAILED_PRECONDITION when the model has no tokenizer)."""
        request = inference_pb2.DetokenizeRequest(
            token_ids=list(token_ids), skip_special_tokens=skip_special_tokens)
        return str(self._call(self._inference.Detokenize, request, timeout).text)

    def model_info(self, *, timeout: Optional[float] = None) -> ModelInfo:
        """The served model's geometry, cache layout and device."""
        info = self._call(self._inference.GetModelInfo, inference_pb2.GetModelInfoRequest(),
                          timeout)
        return ModelInfo.from_proto(info)

    def load(self, *, timeout: Optional[float] = None) -> Load:
        """Current queue and cache occupancy."""
        return Load.from_proto(
            self._call(self._inference.GetLoad, inference_pb2.GetLoadRequest(), timeout))

    def health(self, service: str = "", *, timeout: Optional[float] = None) -> HealthStatus:
        """grpc.health.v1 Check; "" is the whole server (SERVING once the model is loaded)."""
        response = self._call(self._health.Check,
                              health_pb2.HealthCheckRequest(service=service), timeout)
        return HealthStatus.from_proto(response.status)


def _chat_message(message: ChatMessage) -> inference_pb2.ChatMessage:
    if isinstance(message, dict):
        return inference_pb2.ChatMessage(role=message["role"], content=message["content"])
    role, content = message
    return inference_pb2.ChatMessage(role=role, content=content)

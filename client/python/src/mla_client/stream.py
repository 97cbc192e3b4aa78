"""The iterator over one Generate call's stream."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Iterator, Optional, Type

import grpc

from mla_client.errors import MlaError
from mla_client.messages import Finished, GenerateChunk


class GenerateStream(Iterator[GenerateChunk]):
    """Yields GenerateChunk messages as the server produces them.

    Closing the stream before its end (close(), leaving a ``with`` block, or dropping
    the last reference, as breaking out of a ``for`` loop over a temporary does)
    cancels the call, and the server then aborts the request and frees its cache.
    Iterating after a close ends the iteration; failures raise MlaError.
    """

    def __init__(self, call: Any, request_id: Optional[str]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._done = False
        self._cancelled = False
        self.request_id: Optional[str] = request_id or None
        self.finished: Optional[Finished] = None

    def __iter__(self) -> "GenerateStream":
        return self

    def __next__(self) -> GenerateChunk:
        if self._done or self._cancelled:
            self._done = True
            raise StopIteration
        try:
            message = next(self._call)
        except StopIteration:
            self._done = True
            raise
        except grpc.RpcError as error:
            self._done = True
            # Our own cancel() surfaces as CANCELLED in the reading thread: that is the
            # end the caller asked for, not a failure.
            if self._cancelled and error.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise MlaError.from_rpc_error(error) from None
        chunk = GenerateChunk.from_proto(message)
        if self.request_id is None and chunk.request_id:
            self.request_id = chunk.request_id
        if chunk.finished is not None:
            self.finished = chunk.finished
        return chunk

    def cancel(self) -> None:
        """Cancels the call unless it already ended; safe from any thread, idempotent."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
        self._call.cancel()

    def close(self) -> None:
        """Same as cancel(): stops the stream and releases the server's request."""
        self.cancel()

    def __enter__(self) -> "GenerateStream":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.cancel()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down grpc.
            pass

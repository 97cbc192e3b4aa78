"""The one exception type the client raises for failed calls."""

from __future__ import annotations

import grpc


class MlaError(Exception):
    """A call failed; carries the gRPC status code and the server's message.

    The server's messages name the offending field, e.g.
    ``INVALID_ARGUMENT: token_ids.ids[1]: 600 is outside the vocabulary [0, 512)``.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "MlaError":
        """Converts the error grpcio raises (a grpc.Call as well) into an MlaError."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")

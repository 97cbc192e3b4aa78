"""Python client for mla-server's mla.v1.Inference gRPC service.

    from mla_client import Client

    with Client("127.0.0.1:50051") as client:
        for chunk in client.generate([1, 2, 3], max_tokens=16):
            print(chunk.token_ids)
"""

from mla_client.client import ChatMessage, Client
from mla_client.errors import MlaError
from mla_client.messages import (FinishReason, Finished, GenerateChunk, HealthStatus,
                                 IndexerRecall, Load, ModelInfo, Timings, TokenLogprob, Usage)
from mla_client.stream import GenerateStream

__all__ = [
    "ChatMessage", "Client", "FinishReason", "Finished", "GenerateChunk", "GenerateStream",
    "HealthStatus", "IndexerRecall", "Load", "MlaError", "ModelInfo", "Timings",
    "TokenLogprob", "Usage",
]
__version__ = "0.1.0"

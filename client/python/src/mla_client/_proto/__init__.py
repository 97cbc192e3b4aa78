"""Generated protobuf and gRPC modules (see generate_stubs.sh)."""

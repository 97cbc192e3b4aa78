# mla-serve: a multi-stage image. The build stage installs exactly the packages of
# scripts/install_deps.sh and builds the release preset (no tests, no benchmarks); the
# runtime stage carries only the shared libraries, the two binaries and the small demo model.
#
#   docker build -t mla-serve .                      # CPU build on Debian 12 (the default)
#   docker run --rm -p 50051:50051 -p 9090:9090 mla-serve
#   docker run --rm -v /data/models:/models -p 50051:50051 -p 9090:9090 mla-serve \
#     mla-server --listen=0.0.0.0:50051 --metrics_address=0.0.0.0:9090 \
#                --model_dir=/models/DeepSeek-V2-Lite
#
# MLA_CUDA=ON compiles the CUDA backend and needs a build image with nvcc and Debian 12's
# package names (see docs/OPERATIONS.md); the CPU image is the one built and run in CI.
ARG BUILD_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm

FROM ${BUILD_IMAGE} AS build
ARG MLA_CUDA=OFF
WORKDIR /src
COPY scripts/install_deps.sh scripts/install_deps.sh
RUN scripts/install_deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DMLA_CUDA=${MLA_CUDA} \
 && cmake --build --preset release --target mla-server mla-client -j"$(nproc)" \
 && strip build/release/server/mla-server build/release/client/mla-client

FROM ${RUNTIME_IMAGE} AS runtime
# Set explicitly: a base image imported from a root file system carries no PATH.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Runtime libraries only; their dependencies (OpenSSL, zlib, brotli, c-ares, re2) follow.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libcpp-httplib0.11 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 mla \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mla
COPY --from=build /src/build/release/server/mla-server /usr/local/bin/mla-server
COPY --from=build /src/build/release/client/mla-client /usr/local/bin/mla-client
# The committed tiny model, for a demo out of the box; real models go in the /models volume.
COPY --from=build /src/models/tiny-v2-lite /opt/mla/models/tiny-v2-lite
VOLUME ["/models"]
USER 10001:10001
EXPOSE 50051 9090
# Liveness through gRPC health (SERVING once the model is loaded). Docker honours this;
# podman needs `--format docker` at build time to keep it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["mla-client", "--target=127.0.0.1:50051", "--timeout_ms=2000", "health"]
CMD ["mla-server", "--listen=0.0.0.0:50051", "--metrics_address=0.0.0.0:9090", \
     "--model_dir=/opt/mla/models/tiny-v2-lite"]

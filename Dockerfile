# mla-serve: a multi-stage image. The build stage installs exactly the packages of
# scripts/install_deps.sh and builds the release preset (no tests, no benchmarks); the
# runtime stage carries only the binaries, the shared libraries they link (collected with
# ldd, so that one runtime stage serves both bases) and the small demo model.
#
#   docker build -t mla-serve .                           # CUDA build (the default)
#   docker build --build-arg VARIANT=cpu -t mla-serve:cpu .  # CPU-only build on Debian 12
#   docker run --rm --gpus all -p 50051:50051 -p 9090:9090 -p 8000:8000 mla-serve
#   docker run --rm --gpus all -v /data/models:/models -p 50051:50051 -p 9090:9090 \
#     -p 8000:8000 mla-serve \
#     mla-server --listen=0.0.0.0:50051 --metrics_address=0.0.0.0:9090 \
#                --http_address=0.0.0.0:8000 --model_dir=/models/DeepSeek-V2-Lite
#
# The CUDA variant uses NVIDIA's CUDA 13.0 images on Ubuntu 24.04, whose gRPC, Protobuf and
# Abseil packages are the same versions as Debian 12's. CUDA_ARCHITECTURES picks the GPUs
# the kernels are compiled for (90 = Hopper, e.g. H100/H200; "80;90" for A100 too).
ARG VARIANT=cuda
ARG CUDA_BUILD_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG CPU_IMAGE=debian:bookworm
ARG CPU_RUNTIME_IMAGE=debian:bookworm

FROM ${CUDA_BUILD_IMAGE} AS build-cuda
ENV MLA_CUDA=ON

FROM ${CPU_IMAGE} AS build-cpu
ENV MLA_CUDA=OFF

FROM build-${VARIANT} AS build
ARG CUDA_ARCHITECTURES=90
# Set explicitly: a base image imported from a root file system carries no PATH.
ENV PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /src
COPY scripts/install_deps.sh scripts/install_deps.sh
RUN scripts/install_deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DMLA_CUDA=${MLA_CUDA} \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && cmake --build --preset release --target mla-server mla-client -j"$(nproc)" \
 && strip build/release/server/mla-server build/release/client/mla-client
# The shared libraries the binaries need beyond the C runtime and the CUDA toolkit (which
# the CUDA runtime image provides, and whose driver library comes from the host).
RUN mkdir -p /out/lib \
 && ldd build/release/server/mla-server build/release/client/mla-client \
    | awk '/=> \// {print $3}' | sort -u \
    | grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so|/usr/local/cuda|/libcuda\.so' \
    | xargs -r cp -L -t /out/lib

FROM ${CUDA_RUNTIME_IMAGE} AS runtime-cuda
FROM ${CPU_RUNTIME_IMAGE} AS runtime-cpu

FROM runtime-${VARIANT} AS runtime
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=build /out/lib /usr/local/lib/mla
RUN echo /usr/local/lib/mla > /etc/ld.so.conf.d/mla.conf && ldconfig \
 && groupadd --system --gid 10001 mla \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin mla
COPY --from=build /src/build/release/server/mla-server /usr/local/bin/mla-server
COPY --from=build /src/build/release/client/mla-client /usr/local/bin/mla-client
# The committed demo model (trained to find needles; it has a byte-level tokenizer, so text
# prompts work) for a demo out of the box; real models go in the /models volume.
COPY --from=build /src/models/needle-v2-demo /opt/mla/models/needle-v2-demo
VOLUME ["/models"]
USER 10001:10001
# gRPC, metrics, the OpenAI-compatible HTTP API.
EXPOSE 50051 9090 8000
# Liveness through gRPC health (SERVING once the model is loaded). Docker honours this;
# podman needs `--format docker` at build time to keep it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["mla-client", "--target=127.0.0.1:50051", "--timeout_ms=2000", "health"]
CMD ["mla-server", "--listen=0.0.0.0:50051", "--metrics_address=0.0.0.0:9090", \
     "--http_address=0.0.0.0:8000", "--device=auto", \
     "--model_dir=/opt/mla/models/needle-v2-demo"]

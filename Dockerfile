# syntax=docker/dockerfile:1
# vargid container image.
#   docker build -t vargid:cpu .                               # CPU (default)
#   docker build --build-arg VARIANT=cuda -t vargid:cuda .     # ONNX Runtime's CUDA provider
# Every build step calls a script that `make test` runs on the development machines
# (which have no Docker engine): install-go-tools.sh, install-deps.sh,
# install-ort-cuda.sh and install-ort-openvino.sh (through stage-image.sh),
# stage-image.sh, install-runtime-deps.sh.
# tests/tests/deploy.rs stages both variants with stage-image.sh, starts the staged
# server and runs this file's HEALTHCHECK command against it.
#
# Runtime: non-root (uid 10001), working directory /opt/vargid (the models),
# configuration /etc/vargid/vargid.toml (config/vargid.container.toml), gRPC on
# :50051 (plaintext, with grpc.health.v1 and reflection), Prometheus metrics on
# :9464, the gallery on the /data volume. The CPU variant also holds ONNX Runtime's
# OpenVINO build, which it runs on CPUs with AVX-512 (model.execution_provider
# "auto"; the log says what it chose). The CUDA variant needs the NVIDIA container
# toolkit on the host (docker run --gpus all) and a driver for CUDA 13; it brings
# CUDA 13 and cuDNN 9 itself, from NVIDIA's PyPI wheels.

ARG VARIANT=cpu

# grpc-health-probe, built from its pinned, checksummed Go module.
FROM golang:1.26-bookworm AS tools
WORKDIR /src
COPY scripts/install-go-tools.sh scripts/
RUN ./scripts/install-go-tools.sh grpc-health-probe

# The server, ONNX Runtime (CPU, or CUDA with its libraries), the models and the
# configuration, staged as the runtime's file tree under /stage.
FROM rust:1.95-bookworm AS builder
ARG VARIANT
WORKDIR /src
COPY . .
RUN ./scripts/install-deps.sh
COPY --from=tools /src/.deps/bin/grpc-health-probe .deps/bin/grpc-health-probe
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=vargid-target-${VARIANT} \
    ./scripts/stage-image.sh --variant "${VARIANT}" --profile release --out /stage

FROM debian:bookworm-slim AS runtime-base
COPY scripts/install-runtime-deps.sh scripts/apt-install.sh /usr/local/lib/vargid/
RUN /usr/local/lib/vargid/install-runtime-deps.sh --slim
COPY --from=builder /stage/rootfs/ /
COPY --from=builder --chown=10001:10001 /stage/data/ /data/
WORKDIR /opt/vargid
ENV VARGID_CONFIG=/etc/vargid/vargid.toml \
    ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so
USER 10001:10001
VOLUME ["/data"]
EXPOSE 50051 9464
# Serving once the model is loaded and the galleries are ready; NOT_SERVING from the
# start of a graceful shutdown (SIGTERM).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/usr/local/bin/grpc-health-probe", "-addr=127.0.0.1:50051", "-service=vargid.v1.FaceService", "-connect-timeout=3s", "-rpc-timeout=3s"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vargid"]

FROM runtime-base AS runtime-cpu

FROM runtime-base AS runtime-cuda
# The CUDA libraries sit beside ONNX Runtime in /opt/onnxruntime; the driver
# (libcuda.so.1) comes from the host through the NVIDIA container toolkit.
ENV VARGID_MODEL__EXECUTION_PROVIDER=cuda \
    LD_LIBRARY_PATH=/opt/onnxruntime \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

FROM runtime-${VARIANT}

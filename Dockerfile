# vargid, CPU image. Not built on the development machines (no Docker engine there):
# every build step is a call of a script that `make test` runs, so the image builds
# what the tests built. The CUDA variant, the gRPC health check and the compose and
# Kubernetes files are the deployment work still open.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The same pinned, checksummed install step as `make run` and `make test`.
RUN ./scripts/install-deps.sh
RUN cargo build --release --locked --bin vargid

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent vargid \
 && mkdir -p /data && chown vargid /data
COPY --from=builder /src/target/release/vargid /usr/local/bin/vargid
COPY --from=builder /src/.deps/onnxruntime-1.31.1/ /opt/onnxruntime/
COPY models/ /opt/vargid/models/
COPY config/vargid.example.toml /etc/vargid/vargid.example.toml
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.1.31.1 \
    VARGID_MODEL__PATH=/opt/vargid/models/vargfacenet.onnx \
    VARGID_GALLERY__DATA_DIR=/data \
    VARGID_SERVER__LISTEN=0.0.0.0:50051 \
    VARGID_METRICS__LISTEN=0.0.0.0:9464 \
    VARGID_LOG__FORMAT=json
USER vargid
VOLUME ["/data"]
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/vargid"]

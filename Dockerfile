# syntax=docker/dockerfile:1
# segment-connections: a multi-stage build. The runtime image is distroless (glibc, CA
# certificates, no shell), runs as the non-root user 65532 and starts `serve` on 0.0.0.0 with the
# ports and paths helm/segment-connections expects:
#   gRPC 50051, metrics 9464 (/metrics), data (SQLite file, created key) in /data.

FROM rust:1.95-bookworm AS build
# Where the build stage leaves the binary and the empty data folder for the runtime stage.
ARG OUT=/out
WORKDIR /src
# The whole context (.dockerignore leaves out target/, .git and local state), so the build can
# never drift from Cargo.toml: every file a target needs is there. The caches (registry,
# target/) persist across builds with BuildKit, so a code change does not rebuild the
# dependencies. `.ci/image.py` replays this stage on a clean clone in CI.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin segment-connections \
    && install -D target/release/segment-connections "$OUT/segment-connections" \
    && mkdir -p "$OUT/data"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/segment-connections /usr/local/bin/segment-connections
COPY --from=build --chown=65532:65532 /out/data /data
# The working directory is /, so the defaults ./data/connections.db and ./data/master.key land on
# the /data volume.
WORKDIR /
VOLUME ["/data"]
ENV SEGMENT_CONNECTIONS_LISTEN=0.0.0.0:50051 \
    SEGMENT_CONNECTIONS_METRICS_LISTEN=0.0.0.0:9464 \
    SEGMENT_CONNECTIONS_STORE=sqlite:///data/connections.db \
    SEGMENT_CONNECTIONS_LOG_FORMAT=json \
    RUST_LOG=info
USER 65532:65532
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/segment-connections"]
CMD ["serve"]

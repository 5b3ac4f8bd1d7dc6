# syntax=docker/dockerfile:1
# Build: a full Rust toolchain; run: a slim Debian with only the binary, as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo "fn main() {}" > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin exam-depository || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin exam-depository

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home app
COPY --from=build /src/target/release/exam-depository /usr/local/bin/exam-depository
USER 10001:10001
WORKDIR /data
ENV HOST=0.0.0.0 PORT=8080 DATA_DIR=/data LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["exam-depository", "healthcheck"]
ENTRYPOINT ["exam-depository"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# Fairway: static (musl) binaries in an empty image.
#   docker build -t fairway/fairway:0.1.0 .
# Binaries: /fairway, /fairway-proxy, /fairway-controller, /fairway-speaker (see deploy/).

# ---- build ----
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools cmake clang \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# scripts/build-static.sh: musl-gcc for aws-lc-rs, +crt-static, stripped; the same script
# builds the binaries on a Debian host without Docker.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/cache \
    STATIC_TARGET_DIR=/cache/target scripts/build-static.sh /out

# ---- runtime ----
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /
# Non-root by default; the speaker DaemonSet runs as root with only NET_ADMIN and NET_RAW.
USER 65532:65532
ENTRYPOINT ["/fairway-proxy"]

# syntax=docker/dockerfile:1
# Fairway: static (musl) binaries in an empty image.
#   docker build -t fairway/fairway:0.1.0 .
# Binaries: /fairway, /fairway-proxy, /fairway-controller, /fairway-speaker (see deploy/).

# ---- build ----
FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools cmake clang \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# aws-lc-rs (rustls' provider) builds its C code with musl-gcc here.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p bins \
 && mkdir /out \
 && for b in fairway fairway-proxy fairway-controller fairway-speaker; do \
      cp target/x86_64-unknown-linux-musl/release/$b /out/; \
    done

# ---- runtime ----
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /
# Non-root by default; the speaker DaemonSet runs as root with only NET_ADMIN and NET_RAW.
USER 65532:65532
ENTRYPOINT ["/fairway-proxy"]

# syntax=docker/dockerfile:1
# monolith: a multi-stage build into a distroless, non-root runtime image.

# ---- build ----
# The Rust version comes from rust-toolchain.toml (installed below), not from this tag.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY rust-toolchain.toml ./
RUN rustup toolchain install

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/auction.rs \
    && cargo build --release --locked \
    && rm -rf src benches

COPY build.rs ./
COPY migrations ./migrations
COPY src ./src
COPY benches ./benches
# The touch makes cargo rebuild the crate itself over the placeholder above. The image's binary
# loses its symbol table (~2 MB; profiling is done on a build outside the image), nothing else.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip --strip-all -o /monolith target/release/monolith

# ---- runtime ----
# Distroless: glibc and libgcc, no shell, no package manager; `nonroot` is UID/GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /monolith /usr/local/bin/monolith
# The data folder is mounted at run time (read-only), never copied into the image.
ENV HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/monolith", "healthcheck"]
# Exec form: monolith is PID 1 and gets SIGTERM itself, for the graceful shutdown.
ENTRYPOINT ["/usr/local/bin/monolith"]

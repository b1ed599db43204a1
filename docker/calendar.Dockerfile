# The `calendar` service. Build from the repository root:
#   docker build -f docker/calendar.Dockerfile -t apm-tutorial-rust/calendar:local .
# (compose/docker-compose.yaml does this for you.) For Kubernetes, tag it with the workspace version,
# apm-tutorial-rust/calendar:0.1.0, and load or push it as docs/KUBERNETES.md ("The images") says.
#
# The build stages below are kept byte-for-byte identical in notes.Dockerfile,
# calendar.Dockerfile and viewer.Dockerfile: the three binaries are built together, so the
# second and third images reuse every build layer of the first from the cache.

# ---- build stage 1: a skeleton of the workspace ----------------------------------------------
# Every Cargo.toml, the lock file, .cargo/config.toml (the allocator's build setting) and an
# empty stub for each target root (src/lib.rs, src/main.rs, src/bin/*.rs, build.rs, and the .rs
# paths a manifest declares). It changes only when a manifest or the lock file does (or a target
# root is added or removed), so the dependency layer below is rebuilt only then, not for a code
# change.
# The same idea as cargo-chef, without installing it. The root package's tests/ are not in the
# build context (.dockerignore); a package without a target root gets an empty src/lib.rs.
FROM rust:1.95-slim-bookworm AS planner
WORKDIR /src
COPY . .
RUN set -eu; \
    find . -name Cargo.toml -not -path './target/*' | while read -r manifest; do \
      dir="$(dirname "$manifest")"; found=; \
      mkdir -p "/skeleton/$dir"; cp "$manifest" "/skeleton/$manifest"; \
      declared="$(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest")"; \
      for f in src/lib.rs src/main.rs build.rs src/bin/*.rs src/bin/*/main.rs $declared; do \
        [ -f "$dir/$f" ] || continue; found=1; \
        mkdir -p "$(dirname "/skeleton/$dir/$f")"; \
        if [ "$f" = src/lib.rs ]; then : > "/skeleton/$dir/$f"; \
        else echo 'fn main() {}' > "/skeleton/$dir/$f"; fi; \
      done; \
      if [ -z "$found" ]; then mkdir -p "/skeleton/$dir/src"; : > "/skeleton/$dir/src/lib.rs"; fi; \
    done; \
    cp Cargo.lock /skeleton/Cargo.lock; \
    cp -R .cargo /skeleton/.cargo

# ---- build stage 2: the dependencies alone ---------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p notes -p calendar -p tracecat \
 && find crates -name '*.rs' -delete

# ---- build stage 3: the workspace's own code -------------------------------------------------
COPY crates crates
# touch: the real sources must look newer than the stubs compiled above
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p notes -p calendar -p tracecat \
 && mkdir -p /out \
 && cp target/release/notes target/release/calendar target/release/tracecat /out/

# ---- runtime ----------------------------------------------------------------------------------
# Only glibc and libgcc are needed (no TLS: plain HTTP to the Agent).
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
COPY --from=builder /out/calendar /usr/local/bin/calendar
USER 10001:10001

ENV PORT=9090 \
    RUST_LOG=info \
    DD_SERVICE=calendar \
    DD_ENV=dev \
    DD_VERSION=0.1.0
LABEL com.datadoghq.tags.service="calendar" \
      com.datadoghq.tags.env="dev" \
      com.datadoghq.tags.version="0.1.0" \
      org.opencontainers.image.title="apm-tutorial-rust calendar"

EXPOSE 9090
# `calendar healthcheck` GETs http://127.0.0.1:$PORT/health and exits 0 on 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/calendar", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/calendar"]

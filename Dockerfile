# syntax=docker/dockerfile:1
# The native worker's image: `make image` builds it as ghcr.io/mp3conv/mp3conv-worker:<version>
# (the name knative/ uses). It also carries `mp3conv` for the migration Job.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p native-worker -p mp3conv \
 && install -D target/release/mp3conv-worker /out/mp3conv-worker \
 && install -D target/release/mp3conv /out/mp3conv

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg ca-certificates curl python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 mp3conv \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mp3conv
# yt-dlp resolves links to video pages. Its own layer, after the system's and before the
# binaries': a new version (`--build-arg YTDLP_VERSION=...`) rebuilds this layer only, never
# the Rust build. Keep the pin equal to scripts/services.sh (the tests check).
ARG YTDLP_VERSION=2026.10.26
RUN python3 -m venv /opt/yt-dlp \
 && /opt/yt-dlp/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
      "yt-dlp==${YTDLP_VERSION}" \
 && /opt/yt-dlp/bin/yt-dlp --ignore-config --version
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV MP3CONV_WORKER__LISTEN=0.0.0.0:8090 \
    MP3CONV_WORKER__FETCH__PAGES__YTDLP=/opt/yt-dlp/bin/yt-dlp \
    MP3CONV_LOG_FORMAT=json
EXPOSE 8090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:8090/health/live || exit 1
ENTRYPOINT ["mp3conv-worker"]

# pgcdc-consumer container: compiled and run on Debian trixie (librdkafka 2.8, hiredis 1.2,
# libpq 17 for the reads of --documents), as a non-root user, configured only through
# PGCDC_* environment variables.
# Built by scripts/build-images.sh (no registry needed) and tested by
# tests/integration/test_containers.py.
FROM debian:trixie-slim AS build
# The same first layers in both Dockerfiles, so that a build of one caches them for the other.
RUN apt-get update && apt-get -y upgrade && apt-get install -y --no-install-recommends \
      gcc libc6-dev meson ninja-build pkg-config \
      libpq-dev librdkafka-dev libcurl4-openssl-dev libyajl-dev \
      libhiredis-dev libmicrohttpd-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build -Dtests=false -Dbuildtype=release && ninja -C /build consumer/pgcdc-consumer

FROM debian:trixie-slim
RUN apt-get update && apt-get -y upgrade && apt-get install -y --no-install-recommends \
      libpq5 librdkafka1 libcurl4t64 libyajl2 libhiredis1.1.0 libmicrohttpd12t64 curl \
      ca-certificates \
      libssl3t64 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home pgcdc
COPY --from=build /build/consumer/pgcdc-consumer /usr/local/bin/pgcdc-consumer
COPY docker/healthcheck.sh /usr/local/bin/pgcdc-healthcheck
# Numeric, so that a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001
ENV PGCDC_METRICS_ADDR=0.0.0.0:19188
# Follows PGCDC_METRICS_ADDR (docker/healthcheck.sh).
HEALTHCHECK --interval=10s --timeout=3s CMD ["/usr/local/bin/pgcdc-healthcheck"]
ENTRYPOINT ["/usr/local/bin/pgcdc-consumer"]

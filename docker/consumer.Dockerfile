# pgcdc-consumer container: built on Debian bookworm, runs as a non-root
# user, configured only through PGCDC_* environment variables.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config \
      libpq-dev librdkafka-dev libcurl4-openssl-dev libyajl-dev \
      libhiredis-dev libmicrohttpd-dev \
      libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build -Dtests=false -Dbuildtype=release && ninja -C /build consumer/pgcdc-consumer

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      librdkafka1 libcurl4 libyajl2 libhiredis0.14 libmicrohttpd12 curl ca-certificates \
      libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home pgcdc
COPY --from=build /build/consumer/pgcdc-consumer /usr/local/bin/pgcdc-consumer
# Numeric, so that a runtime can check it is not root (Kubernetes runAsNonRoot).
USER 10001
ENV PGCDC_METRICS_ADDR=0.0.0.0:9188
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9188/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/pgcdc-consumer"]

#!/bin/sh
# docker/healthcheck.sh: the images' HEALTHCHECK (installed as pgcdc-healthcheck).
# Asks /healthz at the address the binary serves its metrics on, as PGCDC_METRICS_ADDR
# says (the only way the images are configured), so that moving the port moves the check.
addr=${PGCDC_METRICS_ADDR:-}
if [ -z "$addr" ]; then
  echo "PGCDC_METRICS_ADDR is unset: no /healthz to ask" >&2
  exit 1
fi
host=${addr%:*}
port=${addr##*:}
case $port in
  ''|*[!0-9]*|0) echo "PGCDC_METRICS_ADDR=$addr has no fixed port to ask" >&2; exit 1 ;;
esac
# The binary binds IPv4 only; a wildcard or "localhost" is reached on the loopback.
case $host in
  ''|0.0.0.0|'*'|localhost) host=127.0.0.1 ;;
esac
exec curl -fsS --max-time 2 -o /dev/null "http://$host:$port/healthz"

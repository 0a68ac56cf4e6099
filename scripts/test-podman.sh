#!/usr/bin/env bash
# Provisions Podman as the second real engine of the integration tests, idempotently: Debian's
# podman (installed with apt-get when missing), its Docker-compatible API served on a socket of the
# tests' own (never /var/run/docker.sock, which dockerd owns), and the local test image copied over
# from the Docker engine (scripts/test-engine.sh builds it there; nothing is pulled). Used by .ci/run
# and by the vitest global setup; safe to run again at any time.
#
# Usage: test-podman.sh [stop]
#   (none)  provision as above
#   stop    stop the API service this script started (containers stay; podman keeps them on disk)
#
# Environment (all optional):
#   TEST_ENGINE_STATE   folder for the service's log, pid and containers.conf (default /var/tmp/docker-exporter-test)
#   TEST_PODMAN_SOCKET  the API socket (default /run/docker-exporter-test/podman.sock)
#   TEST_IMAGE          tag of the local test image (default docker-exporter-test/busybox:latest)
set -euo pipefail

STATE=${TEST_ENGINE_STATE:-/var/tmp/docker-exporter-test}/podman
SOCK=${TEST_PODMAN_SOCKET:-/run/docker-exporter-test/podman.sock}
IMAGE=${TEST_IMAGE:-docker-exporter-test/busybox:latest}
mkdir -p "$STATE" "$(dirname "$SOCK")"

say() { echo "test-podman: $*" >&2; }
die() { say "$*"; exit 1; }

# The tests' own containers.conf, given to every podman this script and the tests run (the service
# and the CLI): the VM refuses to raise these two limits to podman's defaults (1048576), so without
# them every `podman run` fails with "setrlimit ... operation not permitted". cgroupfs and the file
# event logger: no systemd runs as PID 1 here (podman would fall back to them, with a warning each time).
export CONTAINERS_CONF="$STATE/containers.conf"
cat > "$CONTAINERS_CONF.new" <<'EOF'
# Written by scripts/test-podman.sh for the docker-exporter integration tests.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$CONTAINERS_CONF.new" "$CONTAINERS_CONF"

service_answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://podman/_ping >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
  pid=$(cat "$STATE/service.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "no podman service started by this script is running (no live pid in $STATE/service.pid)"
  kill -TERM "$pid"
  say "podman service ($pid) stopped"
  exit 0
fi
[ -z "${1:-}" ] || die "unknown command \"$1\" (use stop or nothing)"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${missing[*]}: install Podman (4.3 or later) and curl, or serve Podman's API on $SOCK yourself, and run again"
  fi
  say "installing ${missing[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! service_answers; then
  [ "$(id -u)" = 0 ] || die "no Podman API answers on $SOCK and this user cannot start the rootful service: run 'podman system service --time=0 unix://$SOCK' as root"
  rm -f "$SOCK"
  say "starting podman system service on $SOCK (log: $STATE/service.log)"
  # setsid: the service outlives the test run that started it, as dockerd does. Started in the
  # state folder: Podman 4.3's conmon writes its `oom` marker file into the service's working
  # directory (not the container's), which would otherwise be the checkout running the tests.
  (cd "$STATE" && exec setsid nohup podman system service --time=0 "unix://$SOCK" >"$STATE/service.log" 2>&1 </dev/null) &
  echo $! > "$STATE/service.pid"
  for _ in $(seq 1 60); do
    service_answers && break
    sleep 0.5
  done
  if ! service_answers; then
    tail -20 "$STATE/service.log" >&2 || true
    die "podman system service did not answer on $SOCK within 30 s (log above)"
  fi
fi

# The same image as the Docker engine's, copied (podman stores it as localhost/<name>).
if ! podman image exists "$IMAGE"; then
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "$IMAGE is missing on the Docker engine: run scripts/test-engine.sh first"
  say "loading $IMAGE from the Docker engine"
  docker save "$IMAGE" | podman load -q >/dev/null
fi
say "podman ready: $(curl -s --unix-socket "$SOCK" http://podman/version | sed -n 's/.*"Version":"\([^"]*\)","ApiVersion":"\([^"]*\)".*/server \1, API \2/p')"

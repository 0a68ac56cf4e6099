#!/usr/bin/env bash
# Provisions what the integration tests need, idempotently: a reachable Docker Engine (started here
# when none answers), a TLS-protected loopback TCP listener on that engine for the remote-engine
# tests, and a small local test image built without any registry (busybox-static imported as a
# rootfs). Used by .ci/run and by the vitest global setup; safe to run again at any time.
#
# Usage: test-engine.sh [start|stop]
#   (none)  provision as above
#   stop    stop the engine this script started (the fault tests restart it); its command line is
#           kept so that `start` brings back the same engine with the same listeners
#   start   start that engine again (or provision one as above) and wait until it answers
#
# Environment (all optional):
#   TEST_ENGINE_STATE   folder for the engine's log, pid and TLS material (default /var/tmp/docker-exporter-test)
#   TEST_IMAGE          tag of the local test image (default docker-exporter-test/busybox:latest)
#   TEST_ENGINE_TLS_PORT loopback port of the TLS listener (default 2376)
set -euo pipefail

STATE=${TEST_ENGINE_STATE:-/var/tmp/docker-exporter-test}
IMAGE=${TEST_IMAGE:-docker-exporter-test/busybox:latest}
TLS_PORT=${TEST_ENGINE_TLS_PORT:-2376}
SOCK=/var/run/docker.sock
mkdir -p "$STATE"

say() { echo "test-engine: $*" >&2; }
die() { say "$*"; exit 1; }

engine_answers() { docker -H "unix://$SOCK" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${missing[*]}: install a Docker Engine and busybox (or start an engine on $SOCK) and run again"
  fi
  say "installing ${missing[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_certs() {
  local d="$STATE/tls"
  [ -f "$d/.complete" ] && return 0
  rm -rf "$d"; mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=docker-exporter test CA" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    # A second, unrelated CA: the tests use it to show that a wrong CA is refused.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=some other CA" \
      -keyout wrong-ca-key.pem -out wrong-ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server-key.pem -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server-cert.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=docker-exporter" -keyout key.pem -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out cert.pem 2>/dev/null
    chmod 0644 ./*.pem
    touch .complete
  )
}

start_engine() {
  make_certs
  local d="$STATE/tls"
  say "starting dockerd (log: $STATE/dockerd.log)"
  # -H twice: the unix socket as usual, plus a TLS-verified TCP listener on loopback only.
  nohup dockerd -H "unix://$SOCK" -H "tcp://127.0.0.1:$TLS_PORT" \
    --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/server-cert.pem" --tlskey "$d/server-key.pem" \
    --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo "tcp://127.0.0.1:$TLS_PORT" > "$STATE/tls-host"
  for _ in $(seq 1 60); do
    engine_answers && return 0
    sleep 0.5
  done
  tail -20 "$STATE/dockerd.log" >&2 || true
  die "dockerd did not answer on $SOCK within 30 s (log above)"
}

make_image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  local bb
  bb=$(command -v busybox || true)
  [ -n "$bb" ] || die "busybox is missing: install busybox-static to build the test image"
  file -L "$bb" 2>/dev/null | grep -q 'dynamically linked' && die "$bb is dynamically linked: install busybox-static"
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  say "importing $IMAGE from busybox-static"
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
  rm -rf "$root"
}

ARGS_FILE="$STATE/dockerd.cmdline"

stop_engine() {
  local pid
  pid=$(cat "$STATE/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "no engine started by this script is running (no live pid in $STATE/dockerd.pid)"
  # NUL-separated, exactly as it was started, so that start brings back the same listeners.
  cat "/proc/$pid/cmdline" > "$ARGS_FILE"
  kill -TERM "$pid"
  # dockerd stops every container first (up to each one's stop timeout, 10 s by default).
  for _ in $(seq 1 240); do
    kill -0 "$pid" 2>/dev/null || { say "dockerd ($pid) stopped"; return 0; }
    sleep 0.25
  done
  die "dockerd ($pid) did not stop within 60 s"
}

restart_engine() {
  engine_answers && return 0
  if [ ! -s "$ARGS_FILE" ]; then
    start_engine
    return 0
  fi
  local args=()
  while IFS= read -r -d '' arg; do args+=("$arg"); done < "$ARGS_FILE"
  say "starting ${args[*]}"
  # setsid: the engine must not belong to the test run that restarted it.
  setsid nohup "${args[@]}" >>"$STATE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    engine_answers && { say "engine answers again"; return 0; }
    sleep 0.25
  done
  tail -20 "$STATE/dockerd.log" >&2 || true
  die "dockerd did not answer on $SOCK within 30 s (log above)"
}

case "${1:-}" in
  stop) stop_engine; exit 0 ;;
  start) restart_engine; exit 0 ;;
  '') ;;
  *) die "unknown command \"$1\" (use start, stop or nothing)" ;;
esac

install_packages
if ! engine_answers; then
  [ "$(id -u)" = 0 ] || die "no Docker Engine answers on $SOCK and this user cannot start one: start dockerd"
  start_engine
fi
make_image
say "engine ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"

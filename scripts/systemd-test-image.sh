#!/usr/bin/env bash
# Builds a local image of a minimal Debian with systemd as PID 1, for the test that installs
# docker-exporter as the README says and runs docker-exporter.service under a real service manager
# (so the unit's sandboxing is shown to leave the exporter working). Made with debootstrap from the
# Debian mirror apt already uses, since no image registry may be reachable; slow (minutes), so the
# image is kept and reused.
#
#   scripts/systemd-test-image.sh        # prints the tag
#
# Environment (optional): SYSTEMD_TEST_IMAGE, the tag (default docker-exporter-test/systemd:local);
# DEBIAN_MIRROR (default http://deb.debian.org/debian); DEBIAN_SUITE (default bookworm).
set -euo pipefail

IMAGE=${SYSTEMD_TEST_IMAGE:-docker-exporter-test/systemd:local}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}

say() { echo "systemd-test-image: $*" >&2; }
die() { say "$*"; exit 1; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing: install it (Debian package debootstrap)"
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
say "debootstrap $SUITE from $MIRROR into $root (takes minutes)"
# procps for /bin/kill, which the unit's ExecReload runs.
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$root.log"
# Nothing in the image should try to reach hardware or log in on a console.
rm -f "$root"/etc/systemd/system/getty.target.wants/* "$root"/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service
say "importing $IMAGE"
tar -C "$root" -c . | docker import -c 'ENV container=docker' -c 'CMD ["/lib/systemd/systemd"]' - "$IMAGE" >/dev/null
echo "$IMAGE"

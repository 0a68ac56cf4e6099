#!/usr/bin/env bash
# Builds a local stand-in for the public Node.js base image, for hosts that cannot pull one (the
# test suite, CI): a minimal root filesystem holding this machine's `node` and `npm`, the shared
# libraries `node` links against, a static busybox for the shell `RUN` needs, and CA certificates,
# imported with `docker import` and tagged with the name that `--build-arg NODE_IMAGE=` takes.
# Laid out like the official images (node and npm in /usr/local, users root, node and nobody), so
# the repository's Dockerfile builds on it unchanged.
#
# Idempotent: an existing image built from the same node binary is reused.
#
#   scripts/node-base-image.sh                      # prints the tag
#   docker build --build-arg NODE_IMAGE=$(scripts/node-base-image.sh) -t docker-exporter .
#
# Environment (optional): NODE_BASE_IMAGE, the tag (default docker-exporter-test/node:local).
set -euo pipefail

IMAGE=${NODE_BASE_IMAGE:-docker-exporter-test/node:local}

say() { echo "node-base-image: $*" >&2; }
die() { say "$*"; exit 1; }

node_bin=$(command -v node || true)
[ -n "$node_bin" ] || die "node is not on PATH: install Node.js 20 or newer"
node_bin=$(readlink -f "$node_bin")
npm_cli=$(readlink -f "$(command -v npm || true)" 2>/dev/null || true)
[ -f "$npm_cli" ] || die "npm is not on PATH: install npm"
# npm's entry point is <npm>/bin/npm-cli.js; the package folder is two levels up.
npm_dir=$(dirname "$(dirname "$npm_cli")")
[ -f "$npm_dir/package.json" ] || die "cannot find npm's package folder from $npm_cli"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is missing: install busybox-static"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || die "$busybox is not statically linked: install busybox-static"

# The image is rebuilt when node or npm changes: the tag alone says nothing about what is in it.
fingerprint="node $("$node_bin" --version) $(sha256sum "$node_bin" | cut -c1-16) npm $("$node_bin" -p "require('$npm_dir/package.json').version") ca $(cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null | sha256sum | cut -c1-8)"
if [ "$(docker image inspect --format '{{index .Config.Labels "org.docker-exporter.node-base"}}' "$IMAGE" 2>/dev/null || true)" = "$fingerprint" ]; then
  echo "$IMAGE"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/lib/node_modules,etc/ssl/certs,root,home/node,proc,sys,dev}
install -d -m 1777 "$root/tmp"

cp "$node_bin" "$root/usr/local/bin/node"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# Every library the dynamic loader resolves for node, at the same path, plus the loader itself.
for lib in $(ldd "$node_bin" | grep -oE '/[^ ]+' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# This machine's CA bundle, trusted by node through NODE_EXTRA_CA_CERTS: `npm ci` in the build then
# reaches the registry the way npm on this machine does (also through a TLS-inspecting proxy).
ca_env=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  ca_env=(-c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
node:x:1000:
nobody:x:65534:
EOF
chown 1000:1000 "$root/home/node"

old=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
say "importing $IMAGE ($fingerprint)"
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "${ca_env[@]}" \
  -c "LABEL org.docker-exporter.node-base=\"$fingerprint\"" \
  -c 'CMD ["node"]' \
  - "$IMAGE" >/dev/null
# The replaced image would linger untagged; it stays only while builds made from it still use it.
[ -z "$old" ] || docker rmi "$old" >/dev/null 2>&1 || true
echo "$IMAGE"

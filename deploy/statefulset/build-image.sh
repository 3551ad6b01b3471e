#!/bin/sh
# Builds the Conclave image offline (no registry, no base image): `FROM scratch` with the release
# binaries `conclave` and `conclavectl`, the shared libraries `ldd` lists for them, and an
# /etc/passwd naming the non-root user 10001. Same layout, user, ports and entrypoint as
# deploy/statefulset/Dockerfile (the recipe to use where official base images can be pulled).
#
#   deploy/statefulset/build-image.sh [TAG]      (default TAG: conclave:dev; prints the image size)
#
# Needs: cargo, ldd (Debian: libc-bin), docker (Debian: docker.io).
set -eu
tag="${1:-conclave:dev}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
for tool in cargo ldd docker; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in docker) pkg=docker.io ;; ldd) pkg=libc-bin ;; *) pkg="rustup (https://rustup.rs) or cargo" ;; esac
    echo "build-image.sh: '$tool' not found; install the Debian package $pkg" >&2
    exit 2
  fi
done

cd "$root"
cargo build --release --locked -p conclave-server -p conclave-client --bin conclave --bin conclavectl
target="${CARGO_TARGET_DIR:-$root/target}/release"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/rootfs/var/lib/conclave" "$ctx/rootfs/tmp"
cp "$target/conclave" "$target/conclavectl" "$ctx/rootfs/usr/local/bin/"
# The release profile keeps line tables for backtraces on the host; the image does without.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$ctx/rootfs/usr/local/bin/conclave" "$ctx/rootfs/usr/local/bin/conclavectl"
fi
# Every library the binaries link (absolute paths from ldd), plus the dynamic loader, at the
# same paths inside the image.
for lib in $(ldd "$target/conclave" "$target/conclavectl" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nconclave:x:10001:10001:conclave:/var/lib/conclave:/sbin/nologin\n' \
  >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nconclave:x:10001:\n' >"$ctx/rootfs/etc/group"
# DNS names (peers are addressed by the headless Service's names) resolve through
# /etc/nsswitch.conf -> files, dns; glibc loads libnss_dns/libnss_files at run time.
printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
for nss in libnss_dns.so.2 libnss_files.so.2 libresolv.so.2; do
  path="$(ldconfig -p 2>/dev/null | awk -v n="$nss" '$1 == n && /x86-64|64bit|AArch64/ {print $NF; exit}')"
  if [ -n "$path" ]; then
    mkdir -p "$ctx/rootfs$(dirname "$path")"
    cp -L "$path" "$ctx/rootfs$path"
  fi
done
chmod 1777 "$ctx/rootfs/tmp"

# Ownership is set in tar archives (ADD unpacks them as they are): root owns everything but
# the data dir, which belongs to the runtime user (a fresh volume takes the image's ownership).
tar -C "$ctx/rootfs" --numeric-owner --owner=0 --group=0 -cf "$ctx/rootfs.tar" .
tar -C "$ctx/rootfs" --numeric-owner --owner=10001 --group=10001 --no-recursion -cf "$ctx/data.tar" ./var/lib/conclave
rm -rf "$ctx/rootfs"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ADD rootfs.tar /
ADD data.tar /
USER 10001:10001
VOLUME /var/lib/conclave
WORKDIR /var/lib/conclave
EXPOSE 7379 7380 9379
ENTRYPOINT ["/usr/local/bin/conclave", "serve"]
DOCKERFILE
# (The legacy builder's deprecation notice on stderr is shown only when the build fails.)
if ! docker build -q -t "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  echo "build-image.sh: docker build failed" >&2
  exit 1
fi
echo "built $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')"

#!/usr/bin/env bash
# Builds the base image deploy/Dockerfile starts FROM without any registry: a Debian
# bookworm root filesystem from the apt mirror this host already uses (debootstrap),
# imported into podman and tagged docker.io/library/python:3.11-slim, so that
#     podman build --pull=never -f deploy/Dockerfile -t driftgate:0.1.0 .
# builds the unmodified Dockerfile. Bookworm's python3 is 3.11, like the official image.
#
# Usage (as root): deploy/base-image.sh [TAG]      (TAG: docker.io/library/python:3.11-slim)
#   DRIFTGATE_MIRROR   the Debian mirror (default: the first one of /etc/apt/sources.list{,.d})
#   DRIFTGATE_REBUILD=1  rebuild even if TAG exists
# Needs: debootstrap, podman (apt-get install podman buildah runc debootstrap).
set -euo pipefail
tag="${1:-docker.io/library/python:3.11-slim}"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

if [ "${DRIFTGATE_REBUILD:-0}" != 1 ] && podman image exists "$tag"; then
    echo "base-image: $tag exists (DRIFTGATE_REBUILD=1 rebuilds it)"
    exit 0
fi

mirror_from_apt_sources() {
    # deb822 files (URIs: ...) and one-line files (deb [options] URI suite ...); the first
    # mirror that carries bookworm, skipping security and third-party repositories.
    local files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    {
        sed -n 's/^URIs:[[:space:]]*//p' "${files[@]}" | tr ' ' '\n'
        sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "${files[@]}"
    } | grep -E '/debian/?$' | head -n 1
}
mirror="${DRIFTGATE_MIRROR:-$(mirror_from_apt_sources)}"
if [ -z "$mirror" ]; then
    echo "base-image: no Debian mirror in the apt sources; set DRIFTGATE_MIRROR" >&2
    exit 1
fi

rootfs="$(mktemp -d /tmp/driftgate-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3 \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# pip in the build checks TLS against the system bundle: a host behind a TLS-inspecting
# proxy needs its extra authorities inside the image as well.
shopt -s nullglob
extra_cas=(/usr/local/share/ca-certificates/*.crt)
if [ "${#extra_cas[@]}" -gt 0 ]; then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
fi
# The official image's Python is not Debian's: pip installs into it without complaint.
# Debian marks its own as externally managed (PEP 668), which the Dockerfile's
# `pip install` would refuse.
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

echo "base-image: podman import as $tag"
tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
podman image ls "$tag"

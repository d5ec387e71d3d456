#!/bin/bash
# Build Debian bookworm's Xen 4.17 hypervisor with the nova-vmi patch series.
#
#   bash xen-patch/build.sh [--force]
#
# Idempotent. Steps: make sure apt has a deb-src entry (adds
# /etc/apt/sources.list.d/nova-vmi-src.sources, a deb-src copy of debian.sources, if
# `apt-get source` cannot find the package), install the build tools if missing, fetch and
# unpack the Debian source once (cached), copy it to a clean build tree, apply
# xen-patch/[0-9]*.patch in order with `patch -p1 --fuzz=0`, build the hypervisor
# (`make -C xen defconfig && make -C xen`) and print where xen.gz is.
#
# A build whose inputs (the patches, this script, the source version) are unchanged and
# whose xen.gz is still there is not redone; --force (or NOVA_VMI_XEN_FORCE=1) rebuilds.
#
# Environment: NOVA_VMI_CACHE (default ~/.cache/nova-vmi), JOBS (default: nproc).
# Exit status: 0 built, 1 setup/fetch failed, 2 a patch does not apply, 3 build failed.

set -euo pipefail

XEN_PKG=xen
XEN_VERSION=4.17.5+72-g01140da4e8-1
XEN_UPSTREAM=${XEN_VERSION%-*}
SRC_DIRNAME=xen-${XEN_UPSTREAM}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${NOVA_VMI_CACHE:-$HOME/.cache/nova-vmi}
SRC_CACHE=$CACHE/xen-src
BUILD_DIR=$CACHE/xen-build
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FORCE=${NOVA_VMI_XEN_FORCE:-0}
[ "${1:-}" = --force ] && FORCE=1

start=$SECONDS
log() { printf 'xen-patch: %s\n' "$*" >&2; }
die() { local rc=$1; shift; printf 'xen-patch: ERROR: %s\n' "$*" >&2; exit "$rc"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die 1 "need root (or sudo) to run: $*"
    fi
}

shopt -s nullglob
PATCHES=("$HERE"/[0-9][0-9][0-9][0-9]-*.patch)
shopt -u nullglob
[ ${#PATCHES[@]} -gt 0 ] || die 1 "no patches in $HERE"

# -- 1. build tools -------------------------------------------------------------------
missing=()
for tool in gcc make flex bison python3 patch dpkg-source; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${missing[@]}"; do
        case $tool in
            dpkg-source) pkgs+=(dpkg-dev) ;;
            python3) pkgs+=(python3) ;;
            *) pkgs+=("$tool") ;;
        esac
    done
    log "installing build tools: ${pkgs[*]}"
    as_root apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 \
        || die 1 "could not install ${pkgs[*]}"
fi

# -- 2. source (cached) ---------------------------------------------------------------
have_source_files() {
    [ -f "$SRC_CACHE/${XEN_PKG}_${XEN_VERSION}.dsc" ] &&
        [ -f "$SRC_CACHE/${XEN_PKG}_${XEN_UPSTREAM}.orig.tar.xz" ] &&
        [ -f "$SRC_CACHE/${XEN_PKG}_${XEN_VERSION}.debian.tar.xz" ]
}

source_known() {
    # No `| grep -q` here: with pipefail, grep quitting early fails the pipeline (SIGPIPE).
    local out
    out=$(apt-cache showsrc "$XEN_PKG" 2>/dev/null || true)
    grep -qx "Version: $XEN_VERSION" <<<"$out"
}

ensure_deb_src() {
    source_known && return 0
    local deb822=/etc/apt/sources.list.d/debian.sources
    local ours=/etc/apt/sources.list.d/nova-vmi-src.sources
    if [ ! -f "$ours" ]; then
        [ -f "$deb822" ] || die 1 "no $deb822 to derive a deb-src entry from; add a deb-src line for Debian bookworm by hand"
        log "adding deb-src entry $ours (copy of $deb822)"
        sed -E 's/^Types:.*$/Types: deb-src/' "$deb822" | as_root tee "$ours" >/dev/null
    fi
    log "apt-get update"
    as_root apt-get update >&2 || die 1 "apt-get update failed"
    source_known || die 1 "source package $XEN_PKG=$XEN_VERSION not found on the configured mirrors"
}

mkdir -p "$SRC_CACHE"
if ! have_source_files; then
    ensure_deb_src
    log "downloading $XEN_PKG=$XEN_VERSION source into $SRC_CACHE"
    (cd "$SRC_CACHE" && apt-get source --download-only "$XEN_PKG=$XEN_VERSION") >&2 \
        || die 1 "apt-get source $XEN_PKG=$XEN_VERSION failed"
    have_source_files || die 1 "apt-get source did not leave the expected files in $SRC_CACHE"
fi

# The pristine tree: upstream plus Debian's own patches, exactly what `apt-get source`
# unpacks. Unpacked into a temporary name and renamed, so an interrupted run never leaves
# a half tree that looks complete.
PRISTINE=$SRC_CACHE/$SRC_DIRNAME
if [ ! -f "$PRISTINE/.nova-vmi-unpacked" ]; then
    log "unpacking source"
    rm -rf "$PRISTINE" "$SRC_CACHE/unpack.tmp"
    (cd "$SRC_CACHE" && dpkg-source --no-check -x "${XEN_PKG}_${XEN_VERSION}.dsc" unpack.tmp) >&2 \
        || die 1 "dpkg-source -x failed"
    touch "$SRC_CACHE/unpack.tmp/.nova-vmi-unpacked"
    mv "$SRC_CACHE/unpack.tmp" "$PRISTINE"
fi

# -- 3. cache check ---------------------------------------------------------------------
inputs_hash=$( (echo "$XEN_VERSION"; cat "$HERE/build.sh" "${PATCHES[@]}") | sha256sum | cut -d' ' -f1)
XEN_GZ=$BUILD_DIR/xen/xen.gz
if [ "$FORCE" != 1 ] && [ -f "$XEN_GZ" ] &&
        [ "$(cat "$BUILD_DIR/.nova-vmi-inputs" 2>/dev/null)" = "$inputs_hash" ]; then
    log "series unchanged since the last successful build (use --force to rebuild)"
    log "done in $((SECONDS - start)) s"
    echo "$XEN_GZ"
    exit 0
fi

# -- 4. clean copy + patches ------------------------------------------------------------
log "preparing a clean tree in $BUILD_DIR"
rm -rf "$BUILD_DIR"
cp -a "$PRISTINE" "$BUILD_DIR"
rm -f "$BUILD_DIR/.nova-vmi-unpacked"

for p in "${PATCHES[@]}"; do
    name=$(basename "$p")
    if ! out=$(cd "$BUILD_DIR" && patch -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch -r - < "$p" 2>&1); then
        printf '%s\n' "$out" >&2
        die 2 "patch $name does not apply to $XEN_PKG $XEN_VERSION (tree left in $BUILD_DIR)"
    fi
    log "applied $name"
done

# -- 5. build -----------------------------------------------------------------------------
log "building the hypervisor (make -C xen defconfig && make -j$JOBS -C xen)"
build_log=$BUILD_DIR/nova-vmi-build.log
if ! { make -C "$BUILD_DIR/xen" defconfig && make -j"$JOBS" -C "$BUILD_DIR/xen"; } >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die 3 "hypervisor build failed; full log: $build_log"
fi
[ -f "$XEN_GZ" ] || die 3 "build finished but $XEN_GZ is missing; log: $build_log"
if grep -q 'warning:' "$build_log"; then
    log "compiler warnings (see $build_log):"
    grep 'warning:' "$build_log" >&2
fi

echo "$inputs_hash" > "$BUILD_DIR/.nova-vmi-inputs"
log "built in $((SECONDS - start)) s"
echo "$XEN_GZ"

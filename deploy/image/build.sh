#!/usr/bin/env bash
# Build the container image from the Dockerfile with podman (no Docker daemon, no registry), then
# smoke-test it. `make image` runs this; so does tests/deploy/test_image_run.py.
#
#   1. base: a Debian bookworm root filesystem with Python 3.11 made by mmdebstrap from the host's
#      Debian mirror and imported into podman (once; kept as a podman image);
#   2. image: `podman build` of the Dockerfile with BASE_IMAGE pointing at that base, skipped when
#      the image already carries the hash of the current inputs (Dockerfile, .dockerignore, the files
#      the build context lets through, the base image);
#   3. smoke test: run as a pod runs it (read-only root filesystem, tmpfs for /tmp and HOME):
#      --version, --help offers every role and no bench, each role's --help, uid 10001, / not writable.
#
# Environment: HOOKLINE_IMAGE (tag, default localhost/hookline:dev), HOOKLINE_BASE_IMAGE (default
# localhost/hookline-base:bookworm-python3.11), CONTAINERS_CONF (default deploy/image/containers.conf).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

IMAGE=${HOOKLINE_IMAGE:-localhost/hookline:dev}
BASE=${HOOKLINE_BASE_IMAGE:-localhost/hookline-base:bookworm-python3.11}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
cache=$repo/.hookline/image
# The Dockerfile needs `python` (python-is-python3), `python -m venv` and groupadd/useradd (passwd);
# pip in the build and the delivery worker's TLS need ca-certificates.
BASE_PACKAGES=python3.11,python3.11-venv,python-is-python3,ca-certificates,passwd
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
UID_EXPECTED=10001

say() { printf '[image] %s\n' "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is not installed (apt-get install -y $2; .ci/run does)"; }
label() { podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true; }

need podman "podman runc"
mkdir -p "$cache"
# One build at a time on this machine (make image beside the test, say).
exec 9>"$cache/lock"
flock 9

# --- 1. the base -------------------------------------------------------------------------------------
# The host's Debian sources when it has them (the mirror this machine reaches), else Debian's default.
sources=()
[[ -f /etc/apt/sources.list.d/debian.sources ]] && sources=(/etc/apt/sources.list.d/debian.sources)
recipe=$(printf '%s\n' minbase bookworm "$BASE_PACKAGES" | sha256sum | cut -c1-16)
if [[ "$(label "$BASE" org.hookline.base-recipe)" == "$recipe" ]]; then
  say "base $BASE is current"
else
  need mmdebstrap mmdebstrap
  say "base $BASE: mmdebstrap bookworm with $BASE_PACKAGES (about a minute)"
  start=$SECONDS
  rm -f "$cache/base.tar"
  mmdebstrap --variant=minbase --format=tar --include="$BASE_PACKAGES" \
    bookworm "$cache/base.tar" "${sources[@]}" 2>&1 | sed -u 's/^/[image]   /' \
    || die "mmdebstrap failed (its output is above)"
  say "base: importing into podman"
  podman import --quiet --change 'CMD ["/bin/bash"]' --change "LABEL org.hookline.base-recipe=$recipe" \
    "$cache/base.tar" "$BASE" >/dev/null
  rm -f "$cache/base.tar"
  say "base $BASE ready in $((SECONDS - start)) s"
fi

# --- 2. the image ------------------------------------------------------------------------------------
# What the build reads: the Dockerfile, .dockerignore and the paths it lets through (its `!` lines),
# as they are in the work tree (committed or not), plus the base image itself.
mapfile -t allowed < <(sed -n 's:^!\(.*\)$:\1:p' .dockerignore | sed 's:/$::')
((${#allowed[@]})) || die ".dockerignore lets nothing through"
inputs() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- Dockerfile .dockerignore "${allowed[@]}"
  else
    find Dockerfile .dockerignore "${allowed[@]}" -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' -print0
  fi
}
digest=$(
  {
    podman image inspect --format '{{.Id}}' "$BASE"
    # a listed file that is deleted in the work tree is simply not part of the context
    inputs | sort -z | while IFS= read -r -d '' f; do [[ -f "$f" ]] && sha256sum -- "$f"; done
  } | sha256sum | cut -c1-32
)
if [[ "$(label "$IMAGE" org.hookline.inputs)" == "$digest" ]]; then
  say "image $IMAGE is current (inputs $digest)"
else
  [[ -r "$CA_BUNDLE" ]] || die "no CA bundle at $CA_BUNDLE (pip in the build needs it)"
  say "image $IMAGE: podman build (pip installs the dependencies from PyPI; under a minute)"
  start=$SECONDS
  previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  # --network host and the host's CA bundle: pip in the build reaches PyPI as this machine does.
  podman build --pull=never --network host --layers=false \
    --volume "$CA_BUNDLE:$CA_BUNDLE:ro" \
    --build-arg "BASE_IMAGE=$BASE" \
    --label "org.hookline.inputs=$digest" \
    --tag "$IMAGE" --file Dockerfile . 2>&1 | sed -u 's/^/[image]   /' \
    || die "podman build failed (its output is above)"
  # The image this one replaces, unless something still uses it.
  if [[ -n "$previous" && "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
  say "image $IMAGE built in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B"
fi

# --- 3. smoke test -----------------------------------------------------------------------------------
say "smoke test: read-only root, tmpfs /tmp and HOME, no capabilities, as a pod runs it"
# A pod gets the same: readOnlyRootFilesystem, emptyDirs for HOME and /tmp (fsGroup 10001), all
# capabilities dropped (deploy/k8s/base). runc gives a tmpfs the mode of the directory it covers, so
# HOME's tmpfs is chowned to the container's user (:U) rather than opened with mode=1777.
run() {
  podman run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /tmp --tmpfs /var/lib/hookline:U "$@"
}
version=$(run "$IMAGE" --version) || die "hookline --version failed"
[[ "$version" =~ ^hookline\ [^[:space:]]+$ ]] || die "unexpected --version output: $version"
commands=$(run --env COLUMNS=200 "$IMAGE" --help | sed -n 's/^    \([a-z]\+\) .*/\1/p' | tr '\n' ' ')
for role in api router deliver logsink health topics; do
  [[ " $commands" == *" $role "* ]] || die "--help does not offer $role (it offers: $commands)"
done
[[ " $commands" != *" bench "* ]] || die "--help offers bench, which needs benchmarks/ (not in the image)"
# One container for every role's --help: each must print its usage line.
helps=$(run --entrypoint /bin/sh "$IMAGE" -c \
  'for r in api router deliver logsink health topics; do hookline "$r" --help | head -n 1; done') \
  || die "a role's --help failed: $helps"
for role in api router deliver logsink health topics; do
  grep -q "^usage: hookline $role " <<<"$helps" || die "hookline $role --help printed no usage line"
done
uid=$(run --entrypoint id "$IMAGE" -u)
[[ "$uid" == "$UID_EXPECTED" ]] || die "the image runs as uid $uid, not $UID_EXPECTED"
run --entrypoint /bin/sh "$IMAGE" -c 'touch /probe' 2>/dev/null \
  && die "the root filesystem is writable under --read-only"
run --entrypoint /bin/sh "$IMAGE" -c 'touch /tmp/probe "$HOME/probe" "$HOOKLINE_HOME/probe"' \
  || die "HOME, HOOKLINE_HOME or /tmp is not writable on its tmpfs"
say "ok: $IMAGE ($version; commands: ${commands% }; uid $uid; read-only root)"

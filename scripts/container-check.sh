#!/usr/bin/env bash
# `make container-check`: build the Dockerfile for real and run what it built, with no image registry.
#
# 1. A local Debian bookworm base (debootstrap --variant=minbase: python3, venv and its headers, as the
#    official python image has them, for the one requirement built from source), committed with
#    buildah under the Dockerfile's FROM name, unless an image of that name is already there.
# 2. `buildah bud --isolation=chroot` of the Dockerfile. pip inside the build reaches PyPI only with the
#    host's certificate bundle: it is mounted for the build (--volume) and named by a build argument,
#    never copied into the image. CONTAINER_WHEELS=DIR mounts a local wheel folder the same way (e.g.
#    a CPU torch wheel, instead of PyPI's CUDA build).
# 3. The image's CMD run with `buildah run --isolation=chroot` (podman run cannot run here), /healthz
#    awaited, one cell run through gradio_client, and the database found in the VOLUME path.
# Prints the figures (build time, image size, start to healthy) and ends with one JSON line.
# Needs root, buildah and debootstrap (apt-get install buildah debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${CONTAINER_IMAGE:-reasoning-playground:check}"
BASE="$(awk '/^FROM /{print $2; exit}' Dockerfile)"
CA_BUNDLE="${CONTAINER_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
WHEELS="${CONTAINER_WHEELS:-}"
PY="${PY:-.venv/bin/python}"
MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
WORK="$(mktemp -d /tmp/container-check-XXXXXX)"
CTR=""
SERVER_PID=""

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null || true
  [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "container-check needs $tool: apt-get install buildah debootstrap" >&2; exit 1; }
done
[ -f "$CA_BUNDLE" ] || { echo "no CA bundle at $CA_BUNDLE: set CONTAINER_CA_BUNDLE" >&2; exit 1; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# 1. The base image.
BASE_S=0
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  t=$(now)
  debootstrap --variant=minbase --include=python3,python3-venv,python3-dev bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  base_ctr=$(buildah from scratch)
  mnt=$(buildah mount "$base_ctr")
  tar -C "$WORK/rootfs" -c . | tar -C "$mnt" -x
  buildah umount "$base_ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$base_ctr"
  buildah commit --quiet "$base_ctr" "$BASE" >/dev/null
  buildah rm "$base_ctr" >/dev/null
  rm -rf "$WORK/rootfs"
  BASE_S=$(since "$t")
  echo "base image $BASE from debootstrap ($MIRROR) in ${BASE_S} s"
fi

# 2. The build.
build_args=(--isolation=chroot --pull=never --layers=false -t "$IMAGE"
            --volume "$CA_BUNDLE:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
if [ -n "$WHEELS" ]; then
  build_args+=(--volume "$(realpath "$WHEELS"):/run/wheels:ro" --build-arg PIP_FIND_LINKS=/run/wheels)
fi
BUILD_S=0
if [ "${CONTAINER_REUSE:-0}" = 1 ] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "reusing the image $IMAGE (CONTAINER_REUSE=1)"
else
  t=$(now)
  buildah bud "${build_args[@]}" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
  BUILD_S=$(since "$t")
fi
IMAGE_SIZE=$(buildah images --noheading --format '{{.Size}}' "$IMAGE" | head -1)
echo "built $IMAGE in ${BUILD_S} s ($IMAGE_SIZE)"
# The image's own config (CMD, VOLUME), read from buildah's JSON.
image_config() {
  buildah inspect --type image "$IMAGE" | "$PY" -c "import json, sys; c = json.load(sys.stdin)['OCIv1']['config']; $1"
}

# 3. Run the image's CMD, as the image says (user, workdir, env), on a free loopback port.
PORT=$("$PY" -c "from bench.common import free_port; print(free_port())")
CTR=$(buildah from --pull=never "$IMAGE")
buildah config --env PLAYGROUND_HOST=127.0.0.1 --env PLAYGROUND_PORT="$PORT" "$CTR"
mapfile -t CMD < <(image_config "print('\n'.join(c['Cmd']))")
VOLUME=$(image_config "print(*c['Volumes'])")
# The volume as docker makes a named one: a host folder seeded with what the image holds at that path
# (the baked model), owned as in the image.
mkdir -p "$WORK/volume"
mnt=$(buildah mount "$CTR")
cp -a "$mnt$VOLUME/." "$WORK/volume/"
buildah umount "$CTR" >/dev/null
t=$(now)
buildah run --isolation=chroot --volume "$WORK/volume:$VOLUME" "$CTR" -- "${CMD[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$PY" - "$PORT" <<'EOF' || { tail -40 "$WORK/server.log" >&2; exit 1; }
import sys, time
import httpx
url = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.time() + 600
while time.time() < deadline:
    try:
        if httpx.get(url + "/healthz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
else:
    sys.exit("the container never became healthy")
EOF
HEALTHY_S=$(since "$t")
echo "healthy ${HEALTHY_S} s after start"
"$PY" - "$PORT" <<'EOF' || { tail -40 "$WORK/server.log" >&2; exit 1; }
import sys
from gradio_client import Client
c = Client(f"http://127.0.0.1:{sys.argv[1]}", verbose=False)
session = c.predict("container check", api_name="/new_session")
cell = c.predict(session["id"], "What is 2 + 2?", "", api_name="/add_cell")
out = c.predict(cell["id"], "What is 2 + 2?", "", {"max_new_tokens": 8}, {"max_new_tokens": 8}, api_name="/run_cell")
assert out["standard"]["status"] == out["reasoning"]["status"] == "done", out
print("a cell ran in the container:", repr(out["standard"]["answer"][:60]))
EOF
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
DB="$WORK/volume/playground.db"
[ -s "$DB" ] || { echo "no database at $VOLUME/playground.db (the volume)" >&2; ls -la "$WORK/volume" >&2; exit 1; }
SESSIONS=$("$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from sessions').fetchone()[0])" "$DB")
echo "the database landed in the volume $VOLUME ($SESSIONS session, owner uid $(stat -c %u "$DB"))"
[ "$SESSIONS" -ge 1 ]
printf '{"base_image_s": %s, "build_s": %s, "image_size": "%s", "start_to_healthy_s": %s, "wheels": "%s"}\n' \
  "$BASE_S" "$BUILD_S" "$IMAGE_SIZE" "$HEALTHY_S" "${WHEELS:-pypi}"

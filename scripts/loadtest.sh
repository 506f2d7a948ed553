#!/usr/bin/env bash
# `make loadtest`: a bounded ghz load against a fresh vargid on loopback.
#   1. installs what is missing (install-deps.sh, setup-python.sh for Pillow, and ghz
#      and grpc-health-probe pinned through install-go-tools.sh) and builds vargid;
#   2. builds the payloads from LFW photos (scripts/ghz-payloads.py, into the
#      git-ignored deploy/ghz/payloads/);
#   3. starts vargid on 127.0.0.1 (ports chosen by the OS) with a temporary gallery,
#      waits for grpc.health.v1 to say SERVING, and enrolls 16 LFW people through
#      deploy/ghz/enroll.json;
#   4. runs deploy/ghz/<call>.json (30 s at concurrency 16 by default) through server
#      reflection and prints ghz's summary, then the server's batching figures from
#      /metrics; stops the server (SIGTERM) and removes the gallery.
# Exits 1 if any request of the seeding or the load failed.
#
# Environment (all optional):
#   VARGID_LOADTEST_LOCATION  aligned (112x112 centre crops) or detect (whole photos)
#   VARGID_LOADTEST_CALL      identify (default), embed or enroll
#   VARGID_LOADTEST_DURATION  default 30s;  VARGID_LOADTEST_CONCURRENCY  default 16
#   VARGID_LOADTEST_PROFILE   dev (default) or release: the cargo profile of vargid
#   VARGID_LOADTEST_OUT       where the summary, metrics and server log go
#                             (default target/loadtest)
#   VARGID_LFW_DIR            the LFW data set (default ../shared/data/lfw)
#
# Why the dev profile by default: inference runs in ONNX Runtime's official shared
# library and FAISS, image decoding and ndarray are built at opt-level 3 in the dev
# profile too (Cargo.toml), so the Rust profile barely moves these figures; a first
# release build compiles FAISS again (6+ minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

# The face payload: "aligned" until whole photos are the norm, then "detect".
LOCATION="${VARGID_LOADTEST_LOCATION:-detect}"
CALL="${VARGID_LOADTEST_CALL:-identify}"
DURATION="${VARGID_LOADTEST_DURATION:-30s}"
CONCURRENCY="${VARGID_LOADTEST_CONCURRENCY:-16}"
PROFILE="${VARGID_LOADTEST_PROFILE:-dev}"
OUT="${VARGID_LOADTEST_OUT:-target/loadtest}"
PEOPLE=16

case "$CALL" in identify|embed|enroll) ;; *) echo "loadtest: VARGID_LOADTEST_CALL: identify, embed or enroll" >&2; exit 2 ;; esac
case "$PROFILE" in
  dev) cargo_profile=(); bin=target/debug/vargid ;;
  release) cargo_profile=(--release); bin=target/release/vargid ;;
  *) echo "loadtest: VARGID_LOADTEST_PROFILE: dev or release" >&2; exit 2 ;;
esac

./scripts/install-deps.sh >/dev/null
./scripts/setup-python.sh >/dev/null
./scripts/install-go-tools.sh ghz grpc-health-probe
cargo build "${cargo_profile[@]}" --bin vargid
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(pwd)/.deps/onnxruntime/libonnxruntime.so}"
GHZ=.deps/bin/ghz
PROBE=.deps/bin/grpc-health-probe

.venv/bin/python scripts/ghz-payloads.py --location "$LOCATION" --people "$PEOPLE"

mkdir -p "$OUT"
data="$(mktemp -d)"
log="$OUT/vargid.log"
pid=""
stop_server() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$data"
}
trap stop_server EXIT

# vargid reads every VARGID_* variable as a setting and refuses unknown ones: hide
# this script's own (and VARGID_LFW_DIR) from it.
unset_own=()
for v in $(compgen -e | grep -E '^VARGID_(LOADTEST_|LFW_DIR$)' || true); do unset_own+=(-u "$v"); done
env "${unset_own[@]}" NO_COLOR=1 VARGID_SERVER__LISTEN=127.0.0.1:0 \
  VARGID_METRICS__LISTEN=127.0.0.1:0 VARGID_GALLERY__DATA_DIR="$data" VARGID_LOG__FORMAT=text \
  "$bin" > "$log" 2>&1 &
pid=$!

# "vargid listening grpc=ADDR metrics=ADDR" once the model and galleries are ready.
grpc="" metrics=""
for _ in $(seq 1 240); do
  line="$(grep -m1 'vargid listening' "$log" || true)"
  if [ -n "$line" ]; then
    grpc="$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")"
    metrics="$(sed -E 's/.*metrics=([^ ]+).*/\1/' <<<"$line")"
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "loadtest: vargid exited:"; cat "$log"; exit 1; }
  sleep 0.5
done
[ -n "$grpc" ] || { echo "loadtest: vargid did not start listening within 120 s"; cat "$log"; exit 1; }
"$PROBE" -addr="$grpc" -service=vargid.v1.FaceService

# Fails (exit 1) if the summary shows any status but OK or any error.
check_summary() { # file
  if grep -E '^\s+\[' "$1" | grep -v -E '^\s+\[OK\]' >/dev/null || grep -q 'Error distribution' "$1"; then
    echo "loadtest: requests failed (see above)"
    exit 1
  fi
  grep -q -E '^\s+\[OK\]' "$1" || { echo "loadtest: no successful request"; exit 1; }
}

echo "loadtest: enrolling $PEOPLE LFW people"
"$GHZ" --config deploy/ghz/enroll.json -n "$PEOPLE" -c 1 "$grpc" > "$OUT/ghz-enroll-seed.txt"
check_summary "$OUT/ghz-enroll-seed.txt"

run=("$GHZ" --config "deploy/ghz/$CALL.json" -z "$DURATION" -c "$CONCURRENCY" --timeout 20s "$grpc")
echo
echo "loadtest: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, vargid ($PROFILE profile) and ghz on this machine"
echo "loadtest: payload: $PEOPLE LFW photos, location $LOCATION"
echo "loadtest: ${run[*]}"
"${run[@]}" | tee "$OUT/ghz-$CALL.txt"
check_summary "$OUT/ghz-$CALL.txt"

curl -sf "http://$metrics/metrics" > "$OUT/metrics.txt"
python3 - "$OUT/metrics.txt" <<'PY'
import re, sys
values = {}
for line in open(sys.argv[1]):
    m = re.match(r'^(vargid_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$', line.strip())
    if m:
        key = m.group(1) + (m.group(2) or "")
        values[key] = values.get(key, 0.0) + float(m.group(3))
def total(name):
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))
batches = total("vargid_batch_size_count")
faces = total("vargid_batch_size_sum")
infer = total("vargid_inference_duration_seconds_sum")
print("server (from /metrics, seeding included):")
print(f"  faces embedded {faces:.0f} in {batches:.0f} batches: mean batch {faces / max(batches, 1):.1f}, "
      f"mean inference {1000 * infer / max(batches, 1):.1f} ms per batch")
print(f"  queue full refusals {total('vargid_queue_rejected_total'):.0f}, "
      f"abandoned faces {total('vargid_abandoned_faces_total'):.0f}, "
      f"gallery faces {total('vargid_gallery_faces'):.0f}")
PY
echo "loadtest: ok (summary in $OUT/ghz-$CALL.txt, metrics in $OUT/metrics.txt, server log in $log)"

# Sourced by the LFW scripts. VARGID_PROFILE (dev, the default, or release) picks the
# build: build_vargid builds vargid and vargid-bench in it and sets $bin to their
# folder; start_vargid LOG [VAR=value ...] starts $bin/vargid with those settings in
# the background (its pid in $server) and waits until it listens; exits with the log
# if it dies or does not start within 120 s.
build_vargid() {
  case "${VARGID_PROFILE:-dev}" in
    dev) cargo build --quiet --bin vargid --bin vargid-bench; bin=target/debug ;;
    release) cargo build --quiet --release --bin vargid --bin vargid-bench; bin=target/release ;;
    *) echo "VARGID_PROFILE: dev or release, not ${VARGID_PROFILE}" >&2; exit 2 ;;
  esac
}

start_vargid() {
  local log="$1"; shift
  env "$@" NO_COLOR=1 "$bin/vargid" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do
    grep -q "vargid listening" "$log" && return 0
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  echo "vargid did not start"; cat "$log"; exit 1
}

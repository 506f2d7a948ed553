# Sourced by the LFW scripts: start_vargid LOG [VAR=value ...] starts target/debug/vargid
# with those settings in the background (its pid in $server) and waits until it
# listens; exits with the log if it dies or does not start within 120 s.
start_vargid() {
  local log="$1"; shift
  env "$@" NO_COLOR=1 target/debug/vargid >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do
    grep -q "vargid listening" "$log" && return 0
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  echo "vargid did not start"; cat "$log"; exit 1
}

# Shared by scripts/run and scripts/test: install what the build and tests need, once per
# machine, and keep one build cache outside the clone so a fresh clone (and CI) reuses it.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kyso-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

ensure_deps() {
  local need=()
  # rocksdb's bindgen loads libclang (libclang.so or libclang-N.so, not libclang-cpp) at
  # build time; a machine may have libclang-cpp from another package and still lack it.
  if ! compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null && ! compgen -G "/usr/lib/*/libclang-[0-9]*.so*" >/dev/null; then
    need+=(libclang-dev)
  fi
  command -v g++ >/dev/null || need+=(g++)
  # The TLS test makes its certificate with the openssl command.
  command -v openssl >/dev/null || need+=(openssl)
  # The independent RFC 9162 proof check is a Python script (standard library only).
  command -v python3 >/dev/null || need+=(python3)
  # The schemathesis run (scripts/api-fuzz) lives in its own venv; Debian's python3 needs
  # python3-venv for that.
  python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
  # The dashboard test loads the page in headless Chromium.
  command -v chromium >/dev/null || need+=(chromium)
  # Tests start their own nats-server on a free port.
  if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    need+=(nats-server)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    echo "error: cargo (the Rust toolchain) is required and cannot be installed by this script" >&2
    exit 1
  fi
}

# schemathesis (PyPI), pinned, in a venv kept beside the build cache; prints its path.
ensure_schemathesis() {
  local venv="$HOME/.cache/kyso-py" version="4.32.5"
  if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "schemathesis==$version" >&2
  fi
  echo "$venv/bin/schemathesis"
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The server bench/load/ drives: the kyso binary $1 serving 127.0.0.1:$3 from $2/data at
# the campaign's test clock, any further arguments passed to `serve`, logging to
# $2/server.log; VNPT-CA registered. Sets `pid` (set the EXIT trap that kills it first)
# and `ca`, a token of VNPT-CA.
start_load_target() {
  local kyso=$1 work=$2 port=$3 admin
  shift 3
  "$kyso" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --test-clock 2023-09-01T08:00:00Z "$@" \
    >"$work/server.log" 2>&1 &
  pid=$!
  wait_ready "127.0.0.1:$port"
  admin=$("$kyso" token create --role admin --data-dir "$work/data")
  ca=$("$kyso" token create --role ca:VNPT-CA --data-dir "$work/data")
  python3 - "$port" "$admin" <<'PY'
import json, sys, urllib.request
port, token = sys.argv[1], sys.argv[2]
body = json.dumps({"ca": "VNPT-CA", "name": "VNPT", "app_name": "VNPT SmartCA"}).encode()
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/cas", body, method="POST",
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}))
PY
}

# Waits up to 60 s for a kyso at $1 (host:port) to answer /readyz.
wait_ready() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://{sys.argv[1]}/readyz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"kyso at {sys.argv[1]} not ready after 60 s")
PY
}

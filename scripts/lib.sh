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

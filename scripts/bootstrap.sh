#!/usr/bin/env bash
# One entry point for the README's commands. Idempotent: installs only what is missing.
#   bash scripts/bootstrap.sh demo    install, then start `wasmprof serve --demo`
#   bash scripts/bootstrap.sh test    install (incl. chromium, postgresql), run all tests
#   bash scripts/bootstrap.sh bench   install (incl. llvm-19), run the benchmarks
#   bash scripts/bootstrap.sh install install only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-demo}
shift || true

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

apt_install() {
  # Install Debian packages that are missing; uses sudo when not root.
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

PY=${PYTHON:-python3}
base_pkgs=(python3-venv python3-pip)
# What the tests build modules with and run them on (all from Debian): C/C++ with DWARF
# (clang/lld/wasi-libc), Rust (Debian rustc 1.63 + its wasm32 std), Emscripten (runs
# binaryen), Go 1.19 (GOOS=js), wabt, llvm-19 (llvm-symbolizer/llvm-dwarfdump: ground truth),
# node (V8 traps), perf, the CNCF registry (OCI pulls), chromium, PostgreSQL.
toolchain_pkgs=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 llvm-19 rustc
                libstd-rust-dev-wasm32 emscripten binaryen golang-go wabt docker-registry
                linux-perf chromium postgresql)
case "$MODE" in
  test) apt_install "${base_pkgs[@]}" "${toolchain_pkgs[@]}"
        command -v node >/dev/null 2>&1 || apt_install nodejs
        command -v npm >/dev/null 2>&1 || apt_install npm ;;
  bench) apt_install "${base_pkgs[@]}" "${toolchain_pkgs[@]}"
        command -v node >/dev/null 2>&1 || apt_install nodejs
        command -v npm >/dev/null 2>&1 || apt_install npm ;;
  *) "$PY" -c "import ensurepip, venv" >/dev/null 2>&1 || apt_install "${base_pkgs[@]}" ;;
esac

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.wasmprof-installed"
HASH=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  log "installing wasmprof and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  echo "$HASH" > "$STAMP"
fi
# compiled bytecode for the package: these machines set PYTHONDONTWRITEBYTECODE=1, so an
# editable install would otherwise compile every module at each CLI start (fast: only
# changed files are rewritten)
"$VENV/bin/python" -m compileall -q -j 0 wasmprof >/dev/null || true
export PATH="$VENV/bin:$PATH"

# npm tools the tests use (AssemblyScript compiler, binaryen 132's wasm-opt, Mozilla's
# source-map as ground truth), pinned in scripts/npm-tools/package.json, installed into
# .tools/npm (never global).
npm_tools() {
  local dir="$ROOT/.tools/npm" stamp
  stamp=$(sha256sum scripts/npm-tools/package.json | cut -d' ' -f1)
  if [ ! -f "$dir/.stamp" ] || [ "$(cat "$dir/.stamp")" != "$stamp" ]; then
    log "installing npm test tools into $dir"
    mkdir -p "$dir"
    cp scripts/npm-tools/package.json "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$stamp" > "$dir/.stamp"
  fi
  export WASMPROF_NPM_TOOLS="$dir/node_modules"
}
case "$MODE" in test|bench) npm_tools ;; esac

case "$MODE" in
  install) log "installed; activate with: source .venv/bin/activate" ;;
  demo)
    exec "$VENV/bin/wasmprof" demo "$@" ;;
  test)
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    [ $rc -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
    exit $rc ;;
  bench)
    for b in bench/*.py; do log "running $b"; "$VENV/bin/python" "$b" "$@"; done ;;
  *) echo "usage: $0 demo|test|bench|install [args]" >&2; exit 2 ;;
esac

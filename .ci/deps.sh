#!/usr/bin/env bash
# Installs the Debian packages tagway needs to build, test and benchmark.
# Idempotent: does nothing when every package is already present. Uses
# apt-get (through sudo when not root); never downloads anything else.
set -euo pipefail

packages=(build-essential pkg-config liblua5.4-dev libevent-dev libsqlite3-dev
          lua-cjson lua-cjson-dev libroaring-dev libjemalloc-dev python3 python3-pytest wrk
          sqlite3 curl)
case "${TAGWAY_DEPS_EXTRA:-}" in
  asan) packages+=(clang libclang-rt-14-dev) ;;       # make asan, make fuzz
  valgrind) packages+=(valgrind) ;;                   # make valgrind
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: this machine has no apt-get; install these packages yourself:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

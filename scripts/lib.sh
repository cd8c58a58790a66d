# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables below are used by the sourcing scripts
# Helpers shared by scripts/test, scripts/demo and scripts/api-docs. Source this file,
# don't run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Absolute path of the repository root (the parent of this scripts/ dir).
EMBER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prefix for log lines, e.g. "scripts/test".
EMBER_SCRIPT_NAME="scripts/$(basename "$0")"

# Debian packages needed to build ember, its tests, examples and benchmarks.
EMBER_APT_PACKAGES=(
  build-essential cmake ninja-build ccache
  libeigen3-dev libxsimd-dev zlib1g-dev  # ember's own dependencies
  doctest-dev libbenchmark-dev           # tests / benchmarks
  libstb-dev libcli11-dev                # examples (PNG output, command lines)
  libopenmpi-dev openmpi-bin             # ember::dist and its tests under mpirun
)

# Debian packages for the fuzz targets of tests/fuzz (scripts/fuzz): clang and libFuzzer.
EMBER_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

# Parallelism for builds and ctest.
EMBER_JOBS="${EMBER_JOBS:-2}"

ember_log() { printf '%s: %s\n' "${EMBER_SCRIPT_NAME}" "$*"; }
ember_die() { printf '%s: error: %s\n' "${EMBER_SCRIPT_NAME}" "$*" >&2; exit 1; }

if ! [[ ${EMBER_JOBS} =~ ^[1-9][0-9]*$ ]]; then
  ember_die "EMBER_JOBS must be a positive integer (got '${EMBER_JOBS}')"
fi

# Run a command as root: directly if we are root, else through sudo.
ember_as_root() {
  if [[ ${EUID} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    ember_die "root privileges needed for '$*' (run as root or install sudo)"
  fi
}

ember_pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Install whichever of the given Debian packages are missing. Does nothing
# (and needs no root) when everything is present; `apt-get update` runs at
# most once per script run.
EMBER_APT_UPDATED=0
ember_ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    ember_log "no dpkg here; not installing packages (needed: $*)"
    return 0
  fi
  local pkg missing=()
  for pkg in "$@"; do
    ember_pkg_installed "${pkg}" || missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 \
    || ember_die "missing packages (${missing[*]}) and no apt-get to install them"
  ember_log "installing missing packages: ${missing[*]}"
  if [[ ${EMBER_APT_UPDATED} -eq 0 ]]; then
    ember_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    EMBER_APT_UPDATED=1
  fi
  ember_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

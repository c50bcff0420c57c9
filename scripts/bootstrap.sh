#!/usr/bin/env bash
# Install everything perps-bot needs on a fresh Debian machine with Python 3.11+, then run it.
#
#   scripts/bootstrap.sh run  [perps-bot args]   install, then run the bot (default: --profile dev --dev-fast)
#   scripts/bootstrap.sh test [pytest args]      install (with Redis/PostgreSQL server packages), then the
#                                                gate: ruff, mypy --strict on src/, and the whole test suite
#   scripts/bootstrap.sh install                 install only
#
# Poetry is installed into .tools/poetry with the pypi-mirror plugin; the package index it uses is pip's
# default simple index, computed at run time (the registry here serves only the simple API).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-install}"
[ $# -gt 0 ] && shift

log() { printf '[bootstrap] %s\n' "$*" >&2; }

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  log "Python 3.11+ is required (found: $("$python_bin" --version 2>&1))"
  exit 2
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_services_packages() {
  # The test suite starts its own throwaway redis-server and PostgreSQL from these binaries.
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql); fi
  command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
  # promtool checks and unit-tests deploy/prometheus/ (tests/unit/test_deploy.py); prometheus and
  # prometheus-alertmanager (amtool) deliver a running bot's alert to a webhook (tests/e2e/test_prometheus_scrape.py)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

ensure_poetry() {
  local venv="$here/.tools/poetry"
  if [ ! -x "$venv/bin/poetry" ] || ! "$venv/bin/poetry" self show plugins 2>/dev/null | grep -q pypi-mirror; then
    log "installing Poetry (+ pypi-mirror plugin) into .tools/poetry"
    "$python_bin" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "poetry>=2.1,<2.6" "poetry-plugin-pypi-mirror>=0.6" 2>&1 \
      | grep -v -E "^WARNING: Location .* is ignored" >&2 || true
  fi
  POETRY="$venv/bin/poetry"
}

install_project() {
  ensure_poetry
  POETRY_PYPI_MIRROR_URL="$("$python_bin" -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')"
  export POETRY_PYPI_MIRROR_URL
  export POETRY_VIRTUALENVS_IN_PROJECT=true POETRY_NO_INTERACTION=1
  "$POETRY" env use -q "$("$python_bin" -c 'import sys; print(sys.executable)')" >/dev/null
  log "poetry install"
  "$POETRY" install -q --with dev
  mkdir -p var/logs var/data var/benchmarks
}

case "$mode" in
  install)
    install_project
    ;;
  run)
    install_project
    if [ $# -eq 0 ]; then set -- --profile dev --dev-fast; fi
    exec "$here/.venv/bin/perps-bot" "$@"
    ;;
  test)
    ensure_services_packages
    install_project
    # The gate, in the order that fails fastest: lint, strict types on src/, then the whole suite.
    log "ruff check + ruff format --check"
    "$here/.venv/bin/ruff" check src tests scripts
    "$here/.venv/bin/ruff" format --check src tests scripts
    log "mypy --strict (src/)"
    "$here/.venv/bin/mypy"
    exec "$here/.venv/bin/python" -m pytest "$@"
    ;;
  *)
    log "unknown mode '$mode' (use: run | test | install)"
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Install what riskatlas needs on Debian/Ubuntu, only what is missing:
#   system: PostgreSQL + PostGIS (the embedded database), python3-venv;
#   with --test also Chromium (browser tests) and gdal-bin (OGC client tests);
#   then a virtualenv in .venv with riskatlas installed (editable) and its test tools, at
#   the exact versions and hashes of requirements.lock (requirements-test.lock with --test).
#   Only pip is needed; `make lock` re-pins the locks after pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: installing system packages needs root or sudo" >&2; exit 1; fi
fi
apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "setup: please install these packages with your package manager: $*" >&2; exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  echo "setup: installing $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1; }

[ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/initdb" ] || apt_install postgresql
pg_version=$(basename "$(dirname "$(pg_bindir)")")
[ -f "/usr/share/postgresql/$pg_version/extension/postgis.control" ] \
  || apt_install "postgresql-$pg_version-postgis-3"
python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" 2>/dev/null \
  || apt_install python3-venv
if [ "$want_test" -eq 1 ]; then
  command -v chromium >/dev/null || apt_install chromium
  command -v ogrinfo >/dev/null || apt_install gdal-bin
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
lock=requirements.lock extras="" stamp=.venv/.riskatlas-installed
if [ "$want_test" -eq 1 ]; then
  lock=requirements-test.lock extras="[test]" stamp=.venv/.riskatlas-installed-test
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv from $lock (first time takes a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q --require-hashes -r "$lock"
  # riskatlas itself adds nothing: everything it needs came from the lock.
  .venv/bin/pip install -q --no-deps -e ".$extras"
  missing=$(.venv/bin/pip check 2>/dev/null | grep -i "^riskatlas .* requires" || true)
  if [ -n "$missing" ]; then
    echo "setup: $lock is out of date with pyproject.toml:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    echo "setup: run \`make lock\` (uv pip compile) and commit the new lock files" >&2
    exit 1
  fi
  touch "$stamp"
fi

#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests (installing Debian's server if it is missing)
# and prints the URL to export as STRONGBOX_TEST_PG_URL. Usage: scripts/pg-start.sh <dir> [port]
set -euo pipefail
dir=$1
port=${2:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
  echo "installing PostgreSQL from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# PostgreSQL refuses to run as root: run it as an unprivileged user that owns the cluster dir.
run=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent postgres
  run=(runuser -u postgres --)
fi
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  "${run[@]}" "$bindir/initdb" -D "$dir/data" -U strongbox --auth=trust >"$dir/initdb.log" 2>&1
fi
"${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >&2
echo "postgres://strongbox@127.0.0.1:$port/postgres"

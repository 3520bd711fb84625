#!/usr/bin/env bash
# Makes sure the services the tests need are installed and running, as
# throwaway instances on loopback, and reuses them when they already run.
# Writes their addresses to .services/env (sourced by scripts/test.sh).
#
#   PostgreSQL  reuse 127.0.0.1:5432 (user postgres) or start a throwaway cluster
#   MariaDB     reuse 127.0.0.1:3306 (user root) or start a throwaway server
#   slapd, tinyproxy, squid, openssl: binaries only; each test starts its own instance
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="$PWD/.services"
RUN_DIR="${OUTPOST_SERVICES_DIR:-/tmp/outpost-services}"
mkdir -p "$STATE" "$RUN_DIR"
log() { echo "[services] $*" >&2; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then log "need root to install: ${missing[*]}"; return 1; fi
  if [ $APT_UPDATED = 0 ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Binaries the fixtures start per test.
apt_install slapd ldap-utils tinyproxy squid openssl ca-certificates procps
# Headless browser for the dashboard test (driven by playwright-core).
apt_install chromium fonts-liberation
# Samba AD DC for the Active Directory tests (spec/connectors/ldap/samba.test.ts).
apt_install samba-ad-dc samba-ad-provision ldb-tools

# ---- PostgreSQL ------------------------------------------------------------
pg_bin() {
  local v; v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$v" ] && echo "/usr/lib/postgresql/$v/bin"
}
PG_URL="${PG_URL:-}"
if [ -z "$PG_URL" ]; then
  if command -v psql >/dev/null && psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
    PG_URL="postgres://postgres@127.0.0.1:5432/postgres"; log "PostgreSQL: reusing 127.0.0.1:5432"
  else
    [ -n "$(pg_bin)" ] || apt_install postgresql
    BIN=$(pg_bin); PGDIR="$RUN_DIR/pg"; PGPORT=54329
    if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p $PGPORT; then
      log "PostgreSQL: starting a throwaway cluster on 127.0.0.1:$PGPORT"
      if [ ! -f "$PGDIR/PG_VERSION" ]; then
        rm -rf "$PGDIR"; mkdir -p "$PGDIR"; chown postgres "$PGDIR" 2>/dev/null || true
        runuser -u postgres -- "$BIN/initdb" -q -D "$PGDIR" -U postgres --auth=trust >&2
      fi
      runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDIR" -l "$PGDIR/log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -c fsync=off -c max_connections=300 -k /tmp" >&2
    fi
    PG_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
  fi
fi

# ---- MariaDB ---------------------------------------------------------------
MYSQL_URL="${MYSQL_URL:-}"
if [ -z "$MYSQL_URL" ]; then
  if command -v mariadb >/dev/null && mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
    MYSQL_URL="mysql://root@127.0.0.1:3306/test"; log "MariaDB: reusing 127.0.0.1:3306"
  else
    command -v mariadbd >/dev/null || apt_install mariadb-server
    MYDIR="$RUN_DIR/mariadb"; MYPORT=33069
    if ! mariadb -h 127.0.0.1 -P $MYPORT -u root -e 'select 1' >/dev/null 2>&1; then
      log "MariaDB: starting a throwaway server on 127.0.0.1:$MYPORT"
      if [ ! -d "$MYDIR/data/mysql" ]; then
        mkdir -p "$MYDIR"; chown -R mysql "$MYDIR" 2>/dev/null || true
        mariadb-install-db --user=mysql --datadir="$MYDIR/data" --auth-root-authentication-method=normal >/dev/null
      fi
      mariadbd --user=mysql --datadir="$MYDIR/data" --bind-address=127.0.0.1 --port=$MYPORT \
        --socket="$MYDIR/sock" --pid-file="$MYDIR/pid" --skip-log-bin >"$MYDIR/log" 2>&1 &
      for _ in $(seq 1 60); do mariadb -h 127.0.0.1 -P $MYPORT -u root -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
      mariadb -h 127.0.0.1 -P $MYPORT -u root -e 'create database if not exists test' >&2
    fi
    MYSQL_URL="mysql://root@127.0.0.1:$MYPORT/test"
  fi
fi

cat >"$STATE/env" <<ENV
export PG_URL='$PG_URL'
export MYSQL_URL='$MYSQL_URL'
export SLAPD_BIN='$(command -v slapd || echo /usr/sbin/slapd)'
export TINYPROXY_BIN='$(command -v tinyproxy || echo /usr/bin/tinyproxy)'
export SQUID_BIN='$(command -v squid || echo /usr/sbin/squid)'
export CHROMIUM_BIN='$(command -v chromium || echo /usr/bin/chromium)'
ENV
log "ready: $(tr '\n' ' ' <"$STATE/env")"

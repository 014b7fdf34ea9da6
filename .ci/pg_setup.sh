#!/usr/bin/env bash
# Called by .ci/run before the tests: makes sure the PostgreSQL server binaries (initdb, pg_ctl,
# postgres) are installed. The PostgreSQL tests start their own throwaway cluster with them
# (tests/store/postgres_cluster.py); under CI=true they fail rather than skip without them.
# Installs Debian's `postgresql` package when initdb is found neither on PATH nor under
# /usr/lib/postgresql/*/bin, without letting the package create and start its own cluster.
set -euo pipefail

find_initdb() {
    if command -v initdb >/dev/null 2>&1; then
        command -v initdb
        return
    fi
    find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(find_initdb)" ]; then
    echo "pg_setup: initdb not found; installing Debian's postgresql package" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    # The tests run their own cluster on a free loopback port: no default cluster on 5432.
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends postgresql
fi

initdb="$(find_initdb)"
if [ -z "$initdb" ]; then
    echo "pg_setup: initdb is still missing after installing postgresql" >&2
    exit 1
fi
"$(dirname "$(readlink -f "$initdb")")/postgres" --version

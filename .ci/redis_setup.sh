#!/usr/bin/env bash
# Called by .ci/run before the tests: makes sure the Redis server binary (redis-server) is
# installed. The Redis window tests start their own throwaway server on a free loopback port
# (tests/metering/redis_server.py); under CI=true they fail rather than skip without it.
# Installs Debian's `redis-server` package when redis-server is not on PATH, without letting the
# package start its own service on 6379: the tests need none.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis_setup: redis-server not found; installing Debian's redis-server package" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # A policy-rc.d that exits 101 tells the package's post-install not to start the service;
    # ours is removed afterwards, even when the install fails.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        trap '$sudo rm -f "$policy"' EXIT
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
    fi
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends redis-server
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis_setup: redis-server is still missing after installing redis-server" >&2
    exit 1
fi
redis-server --version

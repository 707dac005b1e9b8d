#!/usr/bin/env bash
# Make sure a redis-server binary is available for the Redis-backed limiter tests.
#
# Quiet and idempotent: when redis-server is already on PATH it prints nothing and exits 0.
# Otherwise, when running as root on a system with apt-get, it installs Debian's
# redis-server package (the daemon it might start is not used: the tests start their own
# server on a free loopback port).  In every other case it prints how to get one and exits 0,
# so the Redis tests skip with a visible reason (or fail when PRODFAST_REQUIRE_REDIS=1).
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

if [ "${EUID:-$(id -u)}" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis-server not found; installing Debian's redis-server package" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Try with the package lists as they are; refresh them only when that fails.
    if ! apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 || true
    fi
    # The package may also start a system daemon on 6379; the tests do not use it.
    hash -r
    if command -v redis-server >/dev/null 2>&1; then
        exit 0
    fi
    echo "ensure-redis: installing redis-server with apt-get failed; the Redis tests will skip" >&2
    echo "ensure-redis: (they fail instead when PRODFAST_REQUIRE_REDIS=1)" >&2
    exit 0
fi

cat >&2 <<'MSG'
ensure-redis: no redis-server on PATH, and it cannot be installed automatically here
(needs root and apt-get). The Redis-backed limiter tests will skip. To run them, install a
Redis server so that `redis-server` is on PATH, for example:
    sudo apt-get install redis-server      # Debian / Ubuntu
    brew install redis                     # macOS
MSG
exit 0

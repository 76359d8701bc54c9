#!/bin/sh
# `make bench` and `make bench-scale` need wrk (the load generator): install it when root can.
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing wrk (apt-get install -y wrk)" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    command -v wrk >/dev/null 2>&1 && exit 0
fi
echo "bench: wrk is required. Install it (Debian/Ubuntu: sudo apt-get install -y wrk; macOS: brew install wrk)." >&2
exit 1

# Shared helpers for .ci/run and .ci/setup-machine (sourced, not executed).
#
# Everything here is idempotent: a step that finds its work already done says so and
# returns. The only state kept is GOSSIPY_DOCKERD_PID, set when *this* shell started
# dockerd, so that the caller can stop that dockerd (and no other) at the end.

# Debian packages the test suite needs: the Docker engine and compose v1 for the e2e tests,
# mmdebstrap to build the base image offline, chromium for the browser tests, redis-server
# for the comparison tests, iproute2 and nftables for the network-namespace tests (ip netns,
# veth, bridges; packet drops), dnsmasq-base (the binary, no service) as the DNS server of the
# DNS discovery tests.
GOSSIPY_APT_PACKAGES=(docker.io docker-compose mmdebstrap chromium redis-server iproute2 nftables dnsmasq-base)
GOSSIPY_DOCKERD_LOG=${GOSSIPY_DOCKERD_LOG:-/var/log/gossipy-dockerd.log}
GOSSIPY_DOCKERD_PID=""

step() { printf '\n[%s] == %s\n' "$(date '+%H:%M:%S')" "$*"; }
info() { printf '[%s]    %s\n' "$(date '+%H:%M:%S')" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$(date '+%H:%M:%S')" "$*" >&2; exit 1; }

# Install the Debian packages that are not installed yet (apt-get update first, once).
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        info "already installed: $*"
        return 0
    fi
    info "installing: ${missing[*]}"
    # Package scripts must not start services (dockerd is started below, by PID, so that
    # it can be stopped again). Debian's container images ship such a policy already.
    local own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || rc=$?
    if [ $rc -eq 0 ]; then
        apt-get install -y -q "${missing[@]}" || rc=$?
    fi
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ $rc -eq 0 ] || die "apt-get failed (exit $rc) installing: ${missing[*]}"
}

docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

# Start dockerd in the background unless an engine already answers. Sets
# GOSSIPY_DOCKERD_PID when it started one; waits until `docker info` works.
ensure_dockerd() {
    if docker_answers; then
        info "a Docker engine already answers; using it"
        return 0
    fi
    command -v dockerd >/dev/null || die "dockerd not found (Debian package docker.io)"
    info "starting dockerd, log: $GOSSIPY_DOCKERD_LOG"
    mkdir -p "$(dirname "$GOSSIPY_DOCKERD_LOG")"
    # setsid: its own session, so that a Ctrl-C meant for the tests does not reach it.
    setsid dockerd >>"$GOSSIPY_DOCKERD_LOG" 2>&1 </dev/null &
    GOSSIPY_DOCKERD_PID=$!
    local i
    for i in $(seq 1 60); do
        if docker_answers; then
            info "dockerd (pid $GOSSIPY_DOCKERD_PID) answers after ${i}s"
            return 0
        fi
        if ! kill -0 "$GOSSIPY_DOCKERD_PID" 2>/dev/null; then
            tail -n 30 "$GOSSIPY_DOCKERD_LOG" >&2 || true
            GOSSIPY_DOCKERD_PID=""
            die "dockerd exited during start-up; see $GOSSIPY_DOCKERD_LOG"
        fi
        sleep 1
    done
    tail -n 30 "$GOSSIPY_DOCKERD_LOG" >&2 || true
    die "dockerd (pid $GOSSIPY_DOCKERD_PID) did not answer within 60 s; see $GOSSIPY_DOCKERD_LOG"
}

# Stop the dockerd this shell started (none otherwise): SIGTERM, then SIGKILL after 30 s.
stop_own_dockerd() {
    [ -n "$GOSSIPY_DOCKERD_PID" ] || return 0
    local pid=$GOSSIPY_DOCKERD_PID i
    GOSSIPY_DOCKERD_PID=""
    kill -0 "$pid" 2>/dev/null || return 0
    step "stopping the dockerd this script started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { info "dockerd stopped"; return 0; }
        sleep 1
    done
    info "dockerd (pid $pid) still running after 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

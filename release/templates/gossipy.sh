#!/bin/sh
# The boot script of a gossipy release, rendered by `python build.py release` from
# release/templates/gossipy.sh. POSIX sh, so that it runs on a bare target; it finds the
# release from its own location, so the release can be unpacked anywhere (even read-only).
set -eu

REL_NAME=@REL_NAME@
REL_VSN=@REL_VSN@
REL_ENV=@REL_ENV@
# The bundled runtime's folder (include_python: true), or empty: use the target's python.
PYTHON_DIR=@PYTHON_DIR@
PYTHON_VERSION=@PYTHON_VERSION@
BUILT_ON=@BUILT_ON@
DEFAULT_TMP=@DEFAULT_TMP@

die() {
    printf '%s: %s\n' "$REL_NAME" "$*" >&2
    exit 1
}

usage() {
    cat <<USAGE
Usage: $(basename "$0") COMMAND [ARGUMENTS]

  foreground  run the node in this process (exec'd, so signals reach it); SIGTERM/Ctrl-C stop it
  start       run the node in the background, with a pid file and a log file
  stop        stop the running node and wait until it has exited
  restart     stop (if running), then start
  ping        ask the running node over its distribution channel; prints pong
  pid         print the running node's process id
  version     print the release name and version
  nodes       print the cluster members as the running node sees them
  describe    print the settings this node runs with (cookie masked)
  broadcast TOPIC EVENT [PAYLOAD]
              send EVENT with PAYLOAD (a JSON object) to every subscriber of TOPIC on every
              node, through the running node's distribution channel
  ready       ask the running node's GET /readyz; exit 0 if it serves clients (a health check)

$REL_NAME $REL_VSN, environment $REL_ENV. Without a rebuild, RELEASE_COOKIE, RELEASE_NODE,
RELEASE_DISTRIBUTION, RELEASE_SYNC_NODES, DNS_CLUSTER_QUERY, PORT, GOSSIPY_API_KEY,
GOSSIPY_JWT_SECRET, GOSSIPY_WORKERS and GOSSIPY_APP override the embedded settings, whose
\${VAR} references are filled from the environment. Pid, log and unpacked code go to
RELEASE_TMP (here: $RELEASE_TMP); give each node on a machine its own.
USAGE
}

# A symlink to this script (e.g. from /usr/local/bin) must still find the release.
script=$0
while [ -L "$script" ]; do
    target=$(readlink "$script")
    case $target in
        /*) script=$target ;;
        *) script=$(dirname "$script")/$target ;;
    esac
done
RELEASE_ROOT=$(CDPATH='' cd -- "$(dirname -- "$script")/.." && pwd -P)
script=$RELEASE_ROOT/bin/$(basename "$script")
PEX=$RELEASE_ROOT/releases/$REL_VSN/$REL_NAME.pex
SETTINGS=$RELEASE_ROOT/releases/$REL_VSN/vm.yml

# The release may be read-only: everything the boot writes goes under RELEASE_TMP.
RELEASE_TMP=${RELEASE_TMP:-${DEFAULT_TMP:-${TMPDIR:-/tmp}/$REL_NAME}}
PEX_ROOT=$RELEASE_TMP/pex
PIDFILE=$RELEASE_TMP/$REL_NAME.pid
LOGFILE=$RELEASE_TMP/log/$REL_NAME.log
# The PEX's bootstrap and Python's tempfile write to TMPDIR: under RELEASE_TMP too, so that a
# container whose root is read-only needs one writable folder.
TMPDIR=$RELEASE_TMP/tmp
export RELEASE_TMP PEX_ROOT TMPDIR

ensure_tmp() {
    # In a shared /tmp, a symlink planted at the default path would aim our writes elsewhere.
    [ ! -L "$RELEASE_TMP" ] || die "$RELEASE_TMP is a symlink; set RELEASE_TMP to the folder itself"
    # Private (umask 077): the unpacked code and the log are this node's alone.
    (umask 077 && mkdir -p "$RELEASE_TMP/log" "$TMPDIR") 2>/dev/null \
        || die "cannot create $RELEASE_TMP; set RELEASE_TMP to a writable folder"
    [ -O "$RELEASE_TMP" ] \
        || die "$RELEASE_TMP belongs to another user; set RELEASE_TMP to a folder of your own"
}

# Sets PYTHON, or stops with the reason the node could not run here.
find_python() {
    if [ -n "$PYTHON_DIR" ]; then
        PYTHON=$RELEASE_ROOT/$PYTHON_DIR/bin/python$PYTHON_VERSION
        # The bundled binary's RUNPATH names the build machine's folder; this finds ours.
        LD_LIBRARY_PATH=$RELEASE_ROOT/$PYTHON_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export LD_LIBRARY_PATH
    else
        PYTHON=
        for candidate in "python$PYTHON_VERSION" python3; do
            PYTHON=$(command -v "$candidate") && break
        done
        [ -n "$PYTHON" ] || die "no python3 on PATH; this release (include_python: false) needs Python $PYTHON_VERSION on the target"
    fi
    # _ssl loads the system's libssl, which Tornado cannot do without.
    if ! found=$("$PYTHON" -I -S -c 'import _ssl, sys; print("%d.%d" % sys.version_info[:2])' 2>&1); then
        case $found in
            *ImportError*)
                die "$PYTHON cannot load a system library the node needs:
  $(printf '%s\n' "$found" | tail -n 1)
On Debian or Ubuntu: apt-get install libssl3" ;;
            *)
                [ -n "$PYTHON_DIR" ] || die "$PYTHON does not run: $found"
                die "the bundled Python runtime cannot start on this machine ($(uname -sm)):
  $found
This release includes the Python of the machine that built it ($BUILT_ON),
so, like include_erts, it runs only on that OS. Run it there, or build with
include_python: false to use the target's own Python $PYTHON_VERSION." ;;
        esac
    fi
    found=$(printf '%s\n' "$found" | head -n 1)
    [ "$found" = "$PYTHON_VERSION" ] \
        || die "$PYTHON is Python $found; this release (include_python: false) needs Python $PYTHON_VERSION"
}

# Prints the pid of this release's running node, if any. A pid file can outlive its node,
# and a reused pid is not ours: our node's command line names this release's settings.
running_pid() {
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\000' '\n' <"/proc/$pid/cmdline" | grep -qxF "$SETTINGS" || return 1
    fi
    echo "$pid"
}

case ${1:-} in
    foreground)
        ensure_tmp
        find_python
        if pid=$(running_pid); then die "already running (pid $pid, pid file $PIDFILE)"; fi
        # exec keeps this pid: the pid file names the node itself.
        echo $$ >"$PIDFILE"
        exec "$PYTHON" -I "$PEX" --config "$SETTINGS" foreground
        ;;
    start)
        ensure_tmp
        find_python
        if pid=$(running_pid); then die "already running (pid $pid, pid file $PIDFILE)"; fi
        # Settings errors belong on this terminal, not in the log.
        "$PYTHON" -I "$PEX" --config "$SETTINGS" describe >/dev/null
        rm -f "$PIDFILE"
        # A session of its own: a Ctrl-C or hang-up meant for this terminal must not reach it.
        if command -v setsid >/dev/null 2>&1; then detach='setsid'; else detach='nohup'; fi
        $detach "$script" foreground </dev/null >>"$LOGFILE" 2>&1 &
        child=$!
        tries=0
        until pid=$(running_pid); do
            if ! kill -0 "$child" 2>/dev/null || [ "$tries" -ge 100 ]; then
                tail -n 20 "$LOGFILE" >&2
                die "did not start; log: $LOGFILE"
            fi
            tries=$((tries + 1))
            sleep 0.1
        done
        echo "$REL_NAME started (pid $pid); log: $LOGFILE"
        ;;
    stop)
        pid=$(running_pid) || die "not running (no live node in $PIDFILE)"
        kill -TERM "$pid"
        # The node closes its websockets within endpoint.shutdown_timeout, then exits.
        tries=0
        while running_pid >/dev/null; do
            [ "$tries" -lt 600 ] || die "pid $pid did not stop within 60 s"
            tries=$((tries + 1))
            sleep 0.1
        done
        rm -f "$PIDFILE"
        echo "$REL_NAME stopped (pid $pid)"
        ;;
    restart)
        if running_pid >/dev/null; then "$script" stop; fi
        exec "$script" start
        ;;
    pid)
        running_pid || die "not running (no live node in $PIDFILE)"
        ;;
    ping | nodes | describe | broadcast | ready)
        ensure_tmp
        find_python
        exec "$PYTHON" -I "$PEX" --config "$SETTINGS" "$@"
        ;;
    version)
        echo "$REL_NAME $REL_VSN"
        ;;
    help | -h | --help)
        usage
        ;;
    '')
        usage >&2
        exit 1
        ;;
    *)
        printf '%s: unknown command: %s\n\n' "$REL_NAME" "$1" >&2
        usage >&2
        exit 1
        ;;
esac

# lib.sh - shared helpers for esb's integration tests (bash, TAP output).
# Each test starts a REAL esbd on 127.0.0.1 with its own config and data
# directory, drives it with curl and real files, and stops only the
# processes it started, by pid.
#
#   . "$(dirname "$0")/lib.sh"
#   esb_setup                       # temp dir $T, picks $PORT
#   write_config <<EOF ... EOF      # $T/esb.xml (use @PORT@, @T@)
#   esbd_start                      # waits for "esbd ready"
#   ok "name" test-command...       # TAP line
#   done_testing                    # plan, cleanup

set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
ESBD=${ESBD:-$top_builddir/esbd}
ESBCTL=${ESBCTL:-$top_builddir/esbctl}
_n=0
_failed=0
ESBD_PID=
T=

ok() {
    local name=$1
    shift
    _n=$((_n + 1))
    if "$@"; then
        echo "ok $_n - $name"
    else
        echo "not ok $_n - $name"
        _failed=$((_failed + 1))
    fi
}

diag() { echo "# $*"; }

# Negate a command (for ok): ok "absent" not grep -q x file
not() { ! "$@"; }

bail() {
    echo "Bail out! $*"
    [ -n "$T" ] && [ -f "$T/esbd.log" ] && sed 's/^/# log: /' "$T/esbd.log" | tail -30
    cleanup
    exit 1
}

cleanup() {
    if [ -n "$ESBD_PID" ] && kill -0 "$ESBD_PID" 2>/dev/null; then
        kill -TERM "$ESBD_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$ESBD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$ESBD_PID" 2>/dev/null
        wait "$ESBD_PID" 2>/dev/null
    fi
    ESBD_PID=
    if [ -n "$T" ] && [ "${KEEP_TMP:-0}" = 0 ]; then rm -rf "$T"; fi
}

done_testing() {
    echo "1..$_n"
    cleanup
    [ "$_failed" -eq 0 ]
}

esb_setup() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/esb-it-XXXXXX")
    PORT=$((20000 + RANDOM % 30000))
    trap 'cleanup' EXIT
}

# Read a config template from stdin into $T/esb.xml, substituting @T@ and @PORT@.
write_config() {
    sed -e "s|@T@|$T|g" -e "s|@PORT@|$PORT|g" >"$T/esb.xml.new"
    mv "$T/esb.xml.new" "$T/esb.xml"
}

# Start esbd on $T/esb.xml; wait until it logs "esbd ready" (10 s max).
# A port already in use makes it exit: pick another port and retry.
esbd_start() {
    local tries
    for tries in 1 2 3 4 5; do
        "$ESBD" "$@" "$T/esb.xml" >>"$T/esbd.log" 2>&1 &
        ESBD_PID=$!
        local i
        for i in $(seq 1 200); do
            if grep -q "esbd ready" "$T/esbd.log" 2>/dev/null &&
                [ "$(grep -c "esbd ready" "$T/esbd.log")" -ge "${_starts:-1}" ]; then
                _starts=$((${_starts:-1} + 1))
                return 0
            fi
            kill -0 "$ESBD_PID" 2>/dev/null || break
            sleep 0.05
        done
        wait "$ESBD_PID" 2>/dev/null
        ESBD_PID=
        if grep -q "Address already in use\|EADDRINUSE\|address in use" "$T/esbd.log"; then
            local old=$PORT
            PORT=$((20000 + RANDOM % 30000))
            sed -i "s|:$old\"|:$PORT\"|g" "$T/esb.xml"
            continue
        fi
        bail "esbd did not start"
    done
    bail "esbd did not start (ports)"
}

esbd_stop() {
    [ -n "$ESBD_PID" ] || return 0
    kill -TERM "$ESBD_PID"
    wait "$ESBD_PID"
    local rc=$?
    ESBD_PID=
    return $rc
}

esbd_kill() {
    [ -n "$ESBD_PID" ] || return 0
    kill -KILL "$ESBD_PID"
    wait "$ESBD_PID" 2>/dev/null
    ESBD_PID=
}

esbd_alive() { [ -n "$ESBD_PID" ] && kill -0 "$ESBD_PID" 2>/dev/null; }

# POST a body: post PATH BODY [CONTENT-TYPE [extra curl args...]]; prints the HTTP status.
post() {
    local path=$1 body=$2 ct=${3:-text/plain}
    shift 3 2>/dev/null || shift $#
    curl -s -o "$T/last-body" -w '%{http_code}' -X POST -H "Content-Type: $ct" \
        --data-binary "$body" "$@" "http://127.0.0.1:$PORT$path"
}

# Wait until a command succeeds (up to N tenths of a second).
wait_for() {
    local tenths=$1
    shift
    local i
    for i in $(seq 1 "$tenths"); do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

# Number of files in a directory (not recursive, no dotfiles).
count_files() { find "$1" -maxdepth 1 -type f ! -name '.*' 2>/dev/null | wc -l; }

# Does any file in DIR contain STRING?
dir_has() { grep -rqF -- "$2" "$1" 2>/dev/null; }

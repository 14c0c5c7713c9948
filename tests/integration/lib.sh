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

# ok_rss NAME COMMAND...: an assertion about esbd's memory (RSS). Under
# ASan (ESB_SANITIZED=1, set by the sanitizer build) freed memory sits in
# ASan's quarantine, so RSS says nothing about leaks or growth there: the
# line is reported as SKIP (counted neither passed nor failed); the plain
# build runs the same assertion for real.
ok_rss() {
    local name=$1
    shift
    if [ "${ESB_SANITIZED:-0}" = 1 ]; then
        _n=$((_n + 1))
        echo "ok $_n - $name # SKIP RSS is not meaningful under ASan; checked in the plain build"
        return 0
    fi
    ok "$name" "$@"
}

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
    PORT=
    PORT=$(pick_free_port)
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
    local tries from
    for tries in 1 2 3 4 5; do
        from=$(($(stat -c %s "$T/esbd.log" 2>/dev/null || echo 0) + 1)) # this start's lines
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
        if tail -c "+$from" "$T/esbd.log" | grep -q "Address already in use\|EADDRINUSE\|address in use"; then
            # Another process took the port meanwhile: move whichever port
            # the error names, in $T/esb.xml, in the test's port variables
            # ($PORT, $APORT, $P2, ...: any name ending in PORT or P<digits>)
            # and in exported ESB_* variables the config reads it from
            # (listen="${ESB_DEMO_LISTEN}": demo.sh, transforms.sh).
            local old new v
            old=$(tail -c "+$from" "$T/esbd.log" | grep -o "cannot listen on [^ ]*:[0-9][0-9]*" |
                tail -1 | sed 's/.*://')
            [ -n "$old" ] || old=$PORT
            new=$(pick_free_port)
            sed -i "s|:$old\"|:$new\"|g" "$T/esb.xml"
            for v in $(compgen -v); do
                [[ $v =~ ^([A-Z_]*PORT|P[0-9]+)$ && ${!v:-} == "$old" ]] &&
                    printf -v "$v" '%s' "$new"
            done
            for v in $(compgen -e ESB_); do
                [[ ${!v} == *":$old" ]] && export "$v=${!v%:"$old"}:$new"
            done
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

# ---- more helpers: headers, ids, the DLQ, memory, background loads ----

# POST like post, also keeping the response headers in $T/last-headers
# (lowercased names); prints the HTTP status.
post_h() {
    local path=$1 body=$2 ct=${3:-text/plain}
    shift 3 2>/dev/null || shift $#
    curl -s -D "$T/last-headers.raw" -o "$T/last-body" -w '%{http_code}' --max-time 20 \
        -X POST -H "Content-Type: $ct" --data-binary "$body" "$@" \
        "http://127.0.0.1:$PORT$path"
    tr -d '\r' <"$T/last-headers.raw" | awk -F': ' '{ $1 = tolower($1) } 1' OFS=': ' \
        >"$T/last-headers"
}

# POST the contents of a file: post_file PATH FILE [CONTENT-TYPE]; prints the status.
post_file() {
    curl -s -o "$T/last-body" -w '%{http_code}' --max-time 20 -X POST \
        -H "Content-Type: ${3:-application/octet-stream}" --data-binary "@$2" \
        "http://127.0.0.1:$PORT$1"
}

# The message id in the last 202 answer's body ({"id":"..."}).
last_id() { sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$T/last-body"; }

# Value of a response header of the last post_h: header_of NAME (lowercase).
header_of() { sed -n "s/^$1: //p" "$T/last-headers" | head -1; }

# esbctl browse QUEUE on the test's bus ($T/bus). esbd must be stopped.
browse() { "$ESBCTL" browse "$1" --data "$T/bus" "${@:2}"; }

# Resident set size of the running esbd, in KiB.
esbd_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$ESBD_PID/status"; }

# Does esbd's log match an extended regex?
log_has() { grep -Eq -- "$1" "$T/esbd.log"; }

# log_ms ERE: the wall clock of esbd's log lines matching ERE, in ms, one a line.
log_ms() {
    grep -E -- "$1" "$T/esbd.log" | cut -c1-23 | sed 's/T/ /' | date -u -f - +%s%3N
}

# breaker_states ENDPOINT: "MS STATE" for each change of the endpoint's
# circuit breaker in esbd's log (STATE: OPEN, HALF-OPEN or CLOSED), in order.
breaker_states() {
    local re="endpoint:$1\\] circuit breaker (OPEN|HALF-OPEN|CLOSED)"
    paste -d' ' <(log_ms "$re") \
        <(grep -E -- "$re" "$T/esbd.log" | sed -E 's/.*circuit breaker ([A-Z-]+).*/\1/')
}

# Start esbd and publish its port in $T/port (background loads read it, as
# a restart may have to move to another port).
esbd_start_tracked() {
    esbd_start "$@"
    echo "$PORT" >"$T/port.new"
    mv "$T/port.new" "$T/port"
}

# Background jobs of the test: bg_start CMD... runs CMD in the background and
# remembers its pid; bg_stop_all asks them to stop ($T/stop-load) and waits.
# A job's loop must stop once load_running is false. esb_setup_bg = esb_setup
# plus stopping the jobs on exit.
_bg_pids=()
# True while background loads should go on (also false once $T is gone,
# e.g. after bail removed it).
load_running() { [ -d "$T" ] && [ ! -e "$T/stop-load" ]; }
bg_start() {
    "$@" &
    _bg_pids+=($!)
}
bg_stop_all() {
    [ -n "$T" ] && [ -d "$T" ] && touch "$T/stop-load"
    local p
    for p in "${_bg_pids[@]}"; do wait "$p" 2>/dev/null; done
    _bg_pids=()
}
esb_setup_bg() {
    esb_setup
    trap 'bg_stop_all; cleanup' EXIT
}

# A client that POSTs the bodies PREFIX-FIRST .. PREFIX-LAST to PATH in order,
# retrying each body (like a real client) until it is answered 202, and
# appends each answered body to $T/acked.PREFIX. Gives up on a body after
# 200 failed tries (logged to $T/gaveup.PREFIX). Stops early when load_running
# turns false.
load_client() {
    local prefix=$1 path=$2 i=$3 last=$4 code tries port
    while [ "$i" -le "$last" ] && load_running; do
        tries=0
        while load_running; do
            port=$(<"$T/port")
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
                -H 'Content-Type: text/plain' --data-binary "$prefix-$i" \
                "http://127.0.0.1:$port$path" 2>/dev/null)
            [ "$code" = 202 ] && { echo "$prefix-$i" >>"$T/acked.$prefix"; break; }
            tries=$((tries + 1))
            [ "$tries" -ge 200 ] && { echo "$prefix-$i $code" >>"$T/gaveup.$prefix"; break; }
            sleep 0.05
        done
        i=$((i + 1))
    done
}

# Every file's content in DIR (not recursive, no dotfiles), one line each,
# sorted (bodies are single lines without a newline).
dir_bodies() {
    find "$1" -maxdepth 1 -type f ! -name '.*' -exec awk '{ print }' {} + 2>/dev/null | sort
}

# Lines of sorted file A that are missing from sorted file B.
missing_lines() { comm -23 <(sort -u "$1") <(sort -u "$2"); }

# Number of extra copies among the lines of a sorted file (sum of count-1).
dup_count() { uniq -c "$1" | awk '$1 > 1 { d += $1 - 1 } END { print d + 0 }'; }

# For wait_for (its arguments are expanded once, so test inside a function):
# count_is DIR N - DIR holds exactly N files; post_is CODE PATH BODY [CT [args]]
# - a POST (made now) is answered CODE.
count_is() { [ "$(count_files "$1")" = "$2" ]; }
post_is() {
    local want=$1
    shift
    [ "$(post_h "$@")" = "$want" ]
}

# routed PATH BODY DIR [CT]: a POST of BODY is answered 202 and BODY then
# shows up in a file in DIR (5 s at most).
routed() {
    [ "$(post "$1" "$2" "${4:-text/plain}")" = 202 ] && wait_for 50 dir_has "$3" "$2"
}

# ---- delivery helpers: a real HTTP destination (tests/tools/http-sink) ----

ESB_SINK=${ESB_SINK:-$top_builddir/tests/tools/http-sink}
_sink_pids=()

# sink_start NAME: start an http-sink on a free port of 127.0.0.1, logging
# each request as a JSON line to $T/NAME.log; sets SINK_PORT and SINK_PID
# (also in $T/NAME.port). Sinks are stopped (by pid) when the test exits.
sink_start() {
    local name=$1 i port=
    : >"$T/$name.out"
    "$ESB_SINK" --log "$T/$name.log" >"$T/$name.out" 2>&1 &
    SINK_PID=$!
    _sink_pids+=("$SINK_PID")
    trap 'sinks_stop; bg_stop_all; cleanup' EXIT
    for i in $(seq 1 100); do
        port=$(sed -n 's/^port=//p' "$T/$name.out")
        [ -n "$port" ] && break
        kill -0 "$SINK_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$port" ] || bail "http-sink $name did not start: $(cat "$T/$name.out")"
    SINK_PORT=$port
    echo "$port" >"$T/$name.port"
}

# Stop every sink this test started (SIGTERM, then SIGKILL after 5 s).
sinks_stop() {
    local p i
    for p in "${_sink_pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || continue
        for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    _sink_pids=()
}

# sink_ctl PORT JSON: set the sink's answer rules (POST /_control); true if
# the sink took them.
sink_ctl() {
    [ "$(curl -s --max-time 5 -X POST --data-binary "$2" "http://127.0.0.1:$1/_control")" = ok ]
}

# sink_stats PORT: GET /_stats into $T/sink-stats (one JSON object); then
# stat_of KEY reads requests, connections, max_concurrent or in_flight from
# it. connections counts TCP connections accepted since the start or the
# last reset_stats, including the one of this /_stats request itself.
sink_stats() { curl -s --max-time 5 "http://127.0.0.1:$1/_stats" >"$T/sink-stats"; }
stat_of() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$T/sink-stats"; }

# sink_tsv LOGFILE: the sink's request log as tab-separated lines
#   T-MS STATUS IDEMPOTENCY-KEY BODY PATH CONTENT-TYPE TRACEPARENT
# (null values as "null"; BODY still JSON-escaped, e.g. {\"a\":1}). Lines
# with a body_hex (not UTF-8) are left out.
sink_tsv() {
    sed -nE 's/^\{"t":([0-9]+),"method":"[^"]*","path":"([^"]*)","query":"[^"]*","status":("[^"]*"|[0-9]+),"idempotency_key":(null|"[^"]*"),"traceparent":(null|"[^"]*"),"content_type":(null|"[^"]*"),"headers":\{.*\},"body":"((\\.|[^"\\])*)"\}$/\1\t\3\t\4\t\7\t\2\t\6\t\5/p' "$1" |
        awk -F'\t' -v OFS='\t' '{ for (i = 2; i <= 7; i++) if (i != 4) gsub(/"/, "", $i); print }'
}

# now_ms: the wall clock in milliseconds (the sink logs the same clock).
now_ms() { date +%s%3N; }

# post_many PATH PREFIX FIRST LAST [PARALLEL] [SIZE]: POST the bodies
# PREFIX-FIRST .. PREFIX-LAST (each padded with '.' to SIZE bytes if SIZE is
# given) with one curl process running PARALLEL (default 8) requests at
# once on keep-alive connections. Appends "STATUS MESSAGE-ID BODY-NAME" per
# request to $T/posted.PREFIX (BODY-NAME is PREFIX-i, without the padding).
post_many() {
    local path=$1 prefix=$2 first=$3 last=$4 par=${5:-8} size=${6:-0}
    local cfg="$T/post-many.$prefix.$first.cfg"
    awk -v url="http://127.0.0.1:$PORT$path" -v p="$prefix" -v a="$first" -v b="$last" \
        -v size="$size" 'BEGIN {
        pad = "."
        while (length(pad) < size) pad = pad pad
        for (i = a; i <= b; i++) {
            name = p "-" i
            body = name
            if (length(name) < size) body = name substr(pad, 1, size - length(name))
            printf "url = \"%s\"\ndata-binary = \"%s\"\n", url, body
            printf "header = \"Content-Type: text/plain\"\noutput = \"/dev/null\"\nmax-time = 20\n"
            printf "write-out = \"%%{http_code} %%header{esb-message-id} %s\\n\"\n", name
            if (i < b) print "next"
        } }' >"$cfg"
    curl -s --no-progress-meter -Z --parallel-max "$par" -K "$cfg" >>"$T/posted.$prefix" 2>/dev/null
    rm -f "$cfg"
}

# pick_free_port: a port of 127.0.0.1 nothing listens on now, that is not
# $PORT (e.g. for <admin listen>), and below the kernel's range of ephemeral
# ports: a busy test machine's client connections take those at any moment.
pick_free_port() {
    local p lo
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [ "${lo:-0}" -gt 12000 ] 2>/dev/null || lo=32768
    while :; do
        p=$((10000 + RANDOM % (lo - 10000)))
        [ "$p" = "${PORT:-}" ] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

#!/usr/bin/env bash
# http-in's own HTTP/1.1 server over raw sockets (bash's /dev/tcp): keep-alive
# and pipelining, a head in pieces, HTTP/1.0, Connection: close, every
# protocol error with its status and nothing stored, Expect: 100-continue,
# the idle timeout, the per-address and whole-server connection limits, a
# client that leaves before its answer, and early answers that do not wait
# for the body.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/out"
P2=$(pick_free_port)
P3=$(pick_free_port)
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" max-body="1KB" timeout="2s"/>
    <http-in id="few" listen="127.0.0.1:$P2" per-ip-connections="2"/>
    <http-in id="max" listen="127.0.0.1:$P3" max-connections="2"/>
    <file-out id="out" dir="@T@/out" name="{id}.txt"/>
  </connectors>
  <route id="in" from="http-in:web" path="/in"><to uri="file-out:out"/></route>
  <route id="few" from="http-in:few" path="/in"><to uri="file-out:out"/></route>
  <route id="max" from="http-in:max" path="/in"><to uri="file-out:out"/></route>
</esb>
XML
esbd_start

CRLF=$'\r\n'
# raw BYTES [SECONDS]: send BYTES on a new connection, print all the server
# sent until it closed or SECONDS (default 1) passed.
raw() {
    timeout "${2:-1}" bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 9; printf "%s" "$1" >&3; cat <&3' \
        "${RAW_PORT:-$PORT}" "$1"
}
# req BODY [EXTRA-HEADER-LINES]: a POST /in with Content-Length.
req() { printf 'POST /in HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s' "${#1}" "${2:-}" "$1"; }
status_of() { head -1 <<<"$1" | tr -d '\r' | cut -d' ' -f2; }
stored() { count_files "$T/out"; }
# ms_of CMD...: run CMD, print how long it took in ms.
ms_of() {
    local a b
    a=$(date +%s%N)
    "$@" >/dev/null 2>&1
    b=$(date +%s%N)
    echo $(((b - a) / 1000000))
}

# ---- keep-alive, pipelining, pieces ----
out=$(raw "$(req one)$(req two)")
ok "two pipelined requests: two 202 answers" [ "$(grep -o 'HTTP/1.1 202' <<<"$out" | wc -l)" = 2 ]
ids=$(grep -i '^esb-message-id:' <<<"$out" | tr -d '\r' | awk '{print $2}' | sort -u | wc -l)
ok "... with two different message ids" [ "$ids" = 2 ]
ok "... both stored" wait_for 50 eval 'dir_has "$T/out" one && dir_has "$T/out" two'
out=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "POST /in HTTP/1.1\r\nHo" >&3
    sleep 0.2; printf "st: t\r\nContent-Le" >&3; sleep 0.2; printf "ngth: 6\r\n\r\npie" >&3
    sleep 0.2; printf "ces" >&3; cat <&3' "$PORT")
ok "a request sent in pieces: 202" [ "$(status_of "$out")" = 202 ]
ok "... stored whole" wait_for 50 dir_has "$T/out" pieces
out=$(raw "$CRLF$CRLF$(req leading)")
ok "empty lines before the request line are skipped: 202" [ "$(status_of "$out")" = 202 ]

# ---- HTTP/1.0 and Connection ----
t=$(ms_of raw "POST /in HTTP/1.0${CRLF}Content-Length: 2${CRLF}${CRLF}10" 3)
out=$(raw "POST /in HTTP/1.0${CRLF}Content-Length: 2${CRLF}${CRLF}10" 3)
ok "HTTP/1.0: 202 with Connection: close" eval '[ "$(status_of "$out")" = 202 ] && grep -qi "^Connection: close" <<<"$out"'
ok "... and the server closes at once (${t} ms)" [ "$t" -lt 1000 ]
out=$(raw "POST /in HTTP/1.0${CRLF}Connection: keep-alive${CRLF}Content-Length: 2${CRLF}${CRLF}ka" 0.5)
ok "HTTP/1.0 with Connection: keep-alive: answered keep-alive" grep -qi "^Connection: keep-alive" <<<"$out"
t=$(ms_of raw "$(req cl "Connection: close$CRLF")" 3)
ok "HTTP/1.1 Connection: close: the server closes after the answer (${t} ms)" [ "$t" -lt 1000 ]
out=$(raw "$(req cl2 "Connection: close$CRLF")" 3)
ok "... and the answer says Connection: close" grep -qi "^Connection: close" <<<"$out"
t=$(ms_of raw "POST /in HTTP/1.0${CRLF}Connection: close, keep-alive${CRLF}Content-Length: 2${CRLF}${CRLF}ck" 3)
ok "HTTP/1.0 with Connection: close, keep-alive: close wins, the server closes (${t} ms)" [ "$t" -lt 1000 ]

# The accepted requests above are all stored before counting what errors store.
ok "the requests accepted so far are all stored" wait_for 50 eval 'dir_has "$T/out" ck && dir_has "$T/out" cl2'
sleep 0.5 # two workers: an earlier one may land just after

# ---- protocol errors: status, and nothing stored ----
err() { # err NAME STATUS BYTES
    local before out
    before=$(stored)
    out=$(raw "$3" 2)
    ok "$1: $2" [ "$(status_of "$out")" = "$2" ]
    sleep 0.1
    ok "... nothing stored" [ "$(stored)" = "$before" ]
}
err "missing Host" 400 "POST /in HTTP/1.1${CRLF}Content-Length: 1${CRLF}${CRLF}x"
err "Content-Length and Transfer-Encoding" 400 \
    "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 1${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}1${CRLF}x${CRLF}0${CRLF}${CRLF}"
err "two different Content-Length" 400 \
    "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 1${CRLF}Content-Length: 2${CRLF}${CRLF}xy"
err "Transfer-Encoding gzip" 501 "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Transfer-Encoding: gzip${CRLF}${CRLF}"
err "HTTP/2.0" 505 "POST /in HTTP/2.0${CRLF}Host: t${CRLF}${CRLF}"
err "a malformed request line" 400 "POST${CRLF}${CRLF}"
err "a space before the colon" 400 "POST /in HTTP/1.1${CRLF}Host : t${CRLF}Content-Length: 1${CRLF}${CRLF}x"
err "an obs-fold line" 400 "POST /in HTTP/1.1${CRLF}Host: t${CRLF}X: a${CRLF} b${CRLF}Content-Length: 1${CRLF}${CRLF}x"
big=$(head -c 17000 /dev/zero | tr '\0' a)
err "a 17000-byte header" 431 "POST /in HTTP/1.1${CRLF}Host: t${CRLF}X: $big${CRLF}${CRLF}"
many=""
for i in $(seq 1 101); do many+="F$i: v$CRLF"; done
err "101 header fields" 431 "POST /in HTTP/1.1${CRLF}Host: t${CRLF}${many}Content-Length: 1${CRLF}${CRLF}x"
err "a malformed chunk size" 400 \
    "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}zz${CRLF}x${CRLF}0${CRLF}${CRLF}"
err "a chunk size followed by junk instead of ';'" 400 \
    "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}5 x${CRLF}hello${CRLF}0${CRLF}${CRLF}"
err "Expect: something" 417 "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Expect: x${CRLF}Content-Length: 1${CRLF}${CRLF}x"
err "a bad percent escape in the path" 400 "POST /in%zz HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 1${CRLF}${CRLF}x"
err "an unknown path" 404 "POST /nope HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 1${CRLF}${CRLF}x"
before=$(stored)
out=$(raw "GET /in HTTP/1.1${CRLF}Host: t${CRLF}${CRLF}")
ok "GET: 405 with Allow: POST" eval '[ "$(status_of "$out")" = 405 ] && grep -qi "^Allow: POST" <<<"$out"'
out=$(raw "HEAD /in HTTP/1.1${CRLF}Host: t${CRLF}${CRLF}")
ok "HEAD: 405 with a Content-Length but no body" \
    eval '[ "$(status_of "$out")" = 405 ] && grep -qi "^Content-Length: [1-9]" <<<"$out" && [ -z "$(sed "1,/^\r$/d" <<<"$out")" ]'
# 413 without the body: only the head is sent, the answer comes anyway.
out=$(raw "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 100000${CRLF}${CRLF}" 2)
ok "Content-Length over max-body: 413 before any body byte" [ "$(status_of "$out")" = 413 ]
chunk=$(head -c 600 /dev/zero | tr '\0' c)
out=$(raw "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}258${CRLF}${chunk}${CRLF}258${CRLF}${chunk}${CRLF}0${CRLF}${CRLF}" 2)
ok "a chunked body over max-body: 413" [ "$(status_of "$out")" = 413 ]
sleep 0.1
ok "... nothing stored by GET, HEAD and the 413s" [ "$(stored)" = "$before" ]
# An answer after a HEAD on the same connection is no HEAD answer: its body is sent.
out=$(raw "HEAD /in HTTP/1.1${CRLF}Host: t${CRLF}${CRLF}POST /in HTTP/2.0${CRLF}Host: t${CRLF}${CRLF}" 2)
ok "an error answer after a HEAD on the same connection has its body" grep -q '"error"' <<<"$out"
out=$(raw "$(req x | sed 's|POST /in|POST /%69n|')")
ok "a percent-encoded path is routed like the plain one: 202" [ "$(status_of "$out")" = 202 ]

# ---- Expect: 100-continue ----
out=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"
    printf "POST /in HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n" >&3
    IFS= read -r -t 2 line <&3; echo "first: $line"; IFS= read -r -t 1 blank <&3
    printf "continue" >&3; IFS= read -r -t 2 line <&3; echo "then: $line"' "$PORT")
ok "Expect: 100-continue: 100 Continue before the body is sent" grep -q "^first: HTTP/1.1 100 Continue" <<<"$out"
ok "... then 202 once the body came" grep -q "^then: HTTP/1.1 202" <<<"$out"
out=$(raw "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Expect: 100-continue${CRLF}Content-Length: 5000${CRLF}${CRLF}" 2)
ok "Expect: 100-continue over max-body: 413 and no 100 Continue" \
    eval '[ "$(status_of "$out")" = 413 ] && ! grep -q "100 Continue" <<<"$out"'

# ---- idle timeout (2s) ----
# idle_ms BYTES: connect, send BYTES, wait (8 s at most) until the server
# closes; print the ms from connect to close, timed inside one process (a
# busy machine's stalls in forking date and timeout do not count).
idle_ms() {
    timeout 10 bash -c 't0=${EPOCHREALTIME/[.,]/}; exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 9
        printf "%s" "$1" >&3; while IFS= read -r -t 8 -N 4096 _ <&3; do :; done
        t1=${EPOCHREALTIME/[.,]/}; echo $(((t1 - t0) / 1000))' "$PORT" "$1"
}
t=$(idle_ms "")
ok "an idle connection is closed after the timeout (${t} ms)" eval '[ "$t" -ge 1500 ] && [ "$t" -lt 5000 ]'
before=$(stored)
t=$(idle_ms "POST /in HTTP/1.1${CRLF}Host: t${CRLF}Content-Le")
ok "a half-sent head is closed after the timeout too (${t} ms)" eval '[ "$t" -ge 1500 ] && [ "$t" -lt 5000 ]'
ok "... nothing stored" [ "$(stored)" = "$before" ]

# ---- per-ip-connections="2" ----
exec 4<>"/dev/tcp/127.0.0.1/$P2" 5<>"/dev/tcp/127.0.0.1/$P2"
sleep 0.2
t=$(RAW_PORT=$P2 ms_of raw "" 3)
ok "a third connection from the address is closed at once (${t} ms)" [ "$t" -lt 1000 ]
req held >&4
IFS= read -r -t 3 line <&4
ok "... while the two open ones work" [ "${line%$'\r'}" = "HTTP/1.1 202 Accepted" ]
exec 5<&-
sleep 0.3
out=$(RAW_PORT=$P2 raw "$(req after)")
ok "after one closed, a new connection is served" [ "$(status_of "$out")" = 202 ]
exec 4<&-

# ---- max-connections="2" (the whole server) ----
exec 4<>"/dev/tcp/127.0.0.1/$P3" 5<>"/dev/tcp/127.0.0.1/$P3"
sleep 0.2
t=$(RAW_PORT=$P3 ms_of raw "" 3)
ok "max-connections: one more connection is closed at once (${t} ms)" [ "$t" -lt 1000 ]
exec 4<&- 5<&-
sleep 0.3
out=$(RAW_PORT=$P3 raw "$(req max-after)")
ok "... and served again once the others closed" [ "$(status_of "$out")" = 202 ]

# ---- a client that leaves before its answer ----
before=$(stored)
timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "%s" "$1" >&3; exec 3<&-' "$PORT" "$(req gone-before-answer)"
ok "a request whose client left at once is still stored" wait_for 50 dir_has "$T/out" gone-before-answer
out=$(raw "$(req still)")
ok "... and the next request is served" [ "$(status_of "$out")" = 202 ]

ok "esbd alive through all of it" esbd_alive
ok "no sanitizer report or assertion in the log" not grep -Eq 'runtime error|AddressSanitizer|Assertion' "$T/esbd.log"
done_testing

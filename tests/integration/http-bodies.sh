#!/usr/bin/env bash
# http-in request bodies of every shape arrive byte for byte: empty, small
# (allocated whole up front from Content-Length), larger than the up-front
# limit (grown as it arrives), chunked (no length: grown), binary; and a
# chunked body over max-body is answered 413 without being stored.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/out"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" max-body="256KB"/>
    <file-out id="out" dir="@T@/out" name="{id}.bin"/>
  </connectors>
  <route id="blob" from="http-in:web" path="/blob"><to uri="file-out:out"/></route>
</esb>
XML
esbd_start

# send NAME FILE [curl args...]: POST FILE; 202 and the output equal to FILE.
send() {
    local name=$1 file=$2
    shift 2
    local code id
    code=$(curl -s -o "$T/last-body" -w '%{http_code}' --max-time 20 -X POST \
        -H "Content-Type: application/octet-stream" --data-binary "@$file" "$@" \
        "http://127.0.0.1:$PORT/blob")
    ok "$name: answered 202" [ "$code" = 202 ]
    id=$(last_id)
    ok "$name: delivered byte for byte" wait_for 50 cmp -s "$file" "$T/out/$id.bin"
}

: >"$T/empty"
head -c 1000 /dev/urandom >"$T/small"
head -c 200000 /dev/urandom >"$T/large"   # over the 64 KiB allocated up front
head -c 262144 /dev/urandom >"$T/exact"   # exactly max-body

send "empty body" "$T/empty"
send "1000 random bytes" "$T/small"
send "200000 random bytes" "$T/large"
send "exactly max-body" "$T/exact"
send "chunked, 1000 bytes" "$T/small" -H "Transfer-Encoding: chunked"
send "chunked, 200000 bytes" "$T/large" -H "Transfer-Encoding: chunked"

head -c 262145 /dev/urandom >"$T/over"
before=$(count_files "$T/out")
code=$(curl -s -o "$T/last-body" -w '%{http_code}' --max-time 20 -X POST \
    -H "Content-Type: application/octet-stream" --data-binary "@$T/over" \
    "http://127.0.0.1:$PORT/blob")
ok "one byte over max-body (Content-Length): 413" [ "$code" = 413 ]
code=$(curl -s -o "$T/last-body" -w '%{http_code}' --max-time 20 -X POST \
    -H "Content-Type: application/octet-stream" -H "Transfer-Encoding: chunked" \
    --data-binary "@$T/over" "http://127.0.0.1:$PORT/blob")
ok "one byte over max-body (chunked): 413" [ "$code" = 413 ]
send "a body after the refused ones" "$T/small"
ok "nothing of the refused bodies was stored" [ "$(count_files "$T/out")" = $((before + 1)) ]
ok "esbd still alive" esbd_alive

done_testing

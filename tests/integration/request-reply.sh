#!/usr/bin/env bash
# Request-reply end to end (issue 5): http-in mode="request-reply" holds the
# HTTP request until the route has run and answers with its final message.
# A real esbd with ONE worker (so a slow Lua transform makes later requests
# wait in the queue), driven by curl:
#   - status/headers/body from the route (esb-reply-status, esb-reply-header-*,
#     a choice and a Lua transform); a bad esb-reply-status falls back to 200;
#   - routing error -> 502 with the reason (and the message dead-lettered);
#     filter -> 204; the message id in esb-message-id every time;
#   - reply-timeout -> 504, and the message is still processed later;
#   - 50 concurrent requests, each answered with its own result;
#   - a one-way endpoint of the same esbd still answers 202;
#   - split (the last part answers), multicast (branches do not), dedupe
#     (a duplicate is answered with esb-duplicate: true);
#   - a client that hangs up while waiting; a reload while requests wait;
#     SIGTERM while requests wait (503 with the id, esbd stops cleanly);
#     SIGKILL while requests wait: the clients see a connection error and
#     the messages are processed after the restart.
. "$(dirname "$0")/lib.sh"
esb_setup
P2=$(pick_free_port)
P3=$(pick_free_port)
while [ "$P3" = "$P2" ]; do P3=$(pick_free_port); done
mkdir -p "$T/lua" "$T/out" "$T/slow" "$T/oneway" "$T/resp"
cat >"$T/lua/reply.lua" <<'LUA'
-- The reply body: the order and how it was classified.
function transform(msg)
    msg.body = '{"order":' .. msg.body .. ',"class":"' ..
        (msg.headers["esb-reply-header-x-order"] or "?") .. '"}'
    msg.content_type = "application/json"
    return msg
end
-- Echo for the concurrent test.
function echo(msg)
    msg.body = "echo:" .. msg.body
    msg.content_type = "text/plain"
    return msg
end
-- One message per word.
function split(msg)
    local out = {}
    for w in msg.body:gmatch("%S+") do out[#out + 1] = { body = w, content_type = "text/plain" } end
    return out
end
-- Busy-wait x-sleep-ms milliseconds (the worker is busy meanwhile).
function sleep(msg)
    local t = esb.time.now() + (tonumber(msg.headers["x-sleep-ms"] or "0") or 0)
    while esb.time.now() < t do end
    return msg
end
LUA
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <bus dir="@T@/bus"/>
  <workers count="1"/>
  <lua dir="@T@/lua" instructions="1000000000000"/>
  <connectors>
    <http-in id="rr" listen="127.0.0.1:@PORT@" mode="request-reply" reply-timeout="20s"/>
    <http-in id="fast" listen="127.0.0.1:$P2" mode="request-reply" reply-timeout="500ms"/>
    <http-in id="ow" listen="127.0.0.1:$P3"/>
    <file-out id="out" dir="@T@/out" name="{id}"/>
    <file-out id="slow" dir="@T@/slow" name="{id}"/>
    <file-out id="oneway" dir="@T@/oneway" name="{id}"/>
  </connectors>
  <route id="orders" from="http-in:rr" path="/orders">
    <choice>
      <when json="\$.total" gt="100">
        <set-header name="esb-reply-status" value="201"/>
        <set-header name="esb-reply-header-x-order" value="big"/>
      </when>
      <otherwise><set-header name="esb-reply-header-x-order" value="small"/></otherwise>
    </choice>
    <transform lua="reply.lua"/>
    <to uri="file-out:out"/>
  </route>
  <route id="status" from="http-in:rr" path="/status">
    <set-header name="esb-reply-status" value="{header:x-want}"/>
  </route>
  <route id="xml" from="http-in:rr" path="/xml">
    <filter xpath="/keep"/>
    <to uri="file-out:out"/>
  </route>
  <route id="echo" from="http-in:rr" path="/echo">
    <set-header name="esb-reply-header-x-n" value="{header:x-n}"/>
    <transform lua="reply.lua" function="echo"/>
  </route>
  <route id="split" from="http-in:rr" path="/split">
    <transform lua="reply.lua" function="split"/>
    <filter regex="keep"/>
    <set-header name="esb-reply-header-x-part" value="{header:split-index}"/>
  </route>
  <route id="mc" from="http-in:rr" path="/mc">
    <multicast>
      <transform lua="reply.lua" function="echo"/>
      <set-header name="esb-reply-status" value="500"/>
    </multicast>
  </route>
  <route id="dd" from="http-in:rr" path="/dd">
    <dedupe key="{header:idempotency-key}" window="1h"/>
    <set-header name="esb-reply-status" value="201"/>
  </route>
  <route id="slow" from="http-in:rr" path="/slow">
    <transform lua="reply.lua" function="sleep"/>
    <to uri="file-out:slow"/>
  </route>
  <route id="slow2" from="http-in:fast" path="/slow">
    <transform lua="reply.lua" function="sleep"/>
    <to uri="file-out:slow"/>
  </route>
  <route id="oneway" from="http-in:ow" path="/in"><to uri="file-out:oneway"/></route>
</esb>
XML
esbd_start

# ---- the route's result is the answer ----
code=$(post_h /orders '{"total":500}' application/json)
ok "big order: 201 from esb-reply-status" [ "$code" = 201 ]
ok "... header x-order: big from esb-reply-header-x-order" [ "$(header_of x-order)" = big ]
ok "... body is the transform's output" \
    [ "$(cat "$T/last-body")" = '{"order":{"total":500},"class":"big"}' ]
ok "... content type is the final message's" \
    [ "$(header_of content-type)" = application/json ]
id=$(header_of esb-message-id)
ok "... esb-message-id names the message" [ ${#id} = 36 ]
ok "... and the route's output was written under that id" \
    wait_for 50 grep -q '"class":"big"' "$T/out/$id"
ok "... no esb-* header leaks into the response" not grep -q '^esb-reply' "$T/last-headers"
code=$(post_h /orders '{"total":5}' application/json)
ok "small order: 200 (no esb-reply-status), x-order: small" \
    eval '[ "$code" = 200 ] && [ "$(header_of x-order)" = small ]'
ok "... body" [ "$(cat "$T/last-body")" = '{"order":{"total":5},"class":"small"}' ]
ok "esb-reply-status 418 is used" [ "$(post_h /status x text/plain -H 'x-want: 418')" = 418 ]
ok "... the body is the final message's" [ "$(cat "$T/last-body")" = x ]
ok "esb-reply-status 99 (not 200..599) falls back to 200" \
    [ "$(post_h /status y text/plain -H 'x-want: 99')" = 200 ]
ok "esb-reply-status 'abc' falls back to 200" \
    [ "$(post_h /status z text/plain -H 'x-want: abc')" = 200 ]

# ---- splits, multicast, dedupe ----
code=$(post_h /split 'a-keep b-keep c-drop' text/plain)
ok "split: the answer is the last part that reached the end of the route" \
    eval '[ "$code" = 200 ] && [ "$(cat "$T/last-body")" = b-keep ] && [ "$(header_of x-part)" = 2 ]'
ok "split with every part filtered: 204" [ "$(post_h /split 'x-drop y-drop' text/plain)" = 204 ]
code=$(post_h /mc original text/plain)
ok "multicast: branches do not change the answer" \
    eval '[ "$code" = 200 ] && [ "$(cat "$T/last-body")" = original ]'
code=$(post_h /dd first text/plain -H 'Idempotency-Key: k-1')
ok "dedupe: first request 201, not marked duplicate" \
    eval '[ "$code" = 201 ] && [ -z "$(header_of esb-duplicate)" ]'
code=$(post_h /dd again text/plain -H 'Idempotency-Key: k-1')
ok "... the same key again: the route's answer with esb-duplicate: true" \
    eval '[ "$code" = 201 ] && [ "$(header_of esb-duplicate)" = true ] && [ "$(cat "$T/last-body")" = again ]'

# ---- routing error, filter ----
code=$(post_h /xml 'not xml' text/plain)
bad_id=$(header_of esb-message-id)
ok "routing error: 502" [ "$code" = 502 ]
ok "... JSON error with the reason" grep -q '"error":"step 1 (filter xpath, line [0-9]*): body is not XML' "$T/last-body"
ok "... and the message id, same as esb-message-id" grep -q "\"id\":\"$bad_id\"" "$T/last-body"
code=$(post_h /xml '<drop/>' application/xml)
ok "filtered: 204 with an empty body" eval '[ "$code" = 204 ] && [ ! -s "$T/last-body" ]'
ok "... esb-message-id still given" [ -n "$(header_of esb-message-id)" ]
ok "filter holds: 200 with the message" \
    eval '[ "$(post_h /xml "<keep/>" application/xml)" = 200 ] && [ "$(cat "$T/last-body")" = "<keep/>" ]'

# ---- one-way endpoint of the same esbd ----
code=$(curl -s -o "$T/ow-body" -w '%{http_code}' --max-time 10 --data-binary one-way-1 \
    "http://127.0.0.1:$P3/in")
ok "one-way endpoint still answers 202 with the id" \
    eval '[ "$code" = 202 ] && grep -q "\"id\"" "$T/ow-body"'
ok "... and delivers" wait_for 50 dir_has "$T/oneway" one-way-1

# ---- reply-timeout: 504, processed later anyway ----
# The worker sleeps 2 s on A; B waits behind it in the queue beyond the
# 500 ms reply-timeout of endpoint "fast".
slowpost() { # PORT NAME SLEEP-MS: answer code and id in $T/NAME.code/.id
    curl -s -D "$T/$2.h" -o "$T/$2.body" -w '%{http_code}' --max-time 20 \
        -H "x-sleep-ms: $3" --data-binary "$2" "http://127.0.0.1:$1/slow" >"$T/$2.code"
    tr -d '\r' <"$T/$2.h" | sed -n 's/^esb-message-id: //p' >"$T/$2.id"
}
slowpost "$P2" to-a 2000 &
pa=$!
sleep 0.2
t0=$(now_ms)
slowpost "$P2" to-b 0
t1=$(now_ms)
wait "$pa"
ok "a request behind a 2 s one: 504 after reply-timeout (500 ms)" [ "$(cat "$T/to-b.code")" = 504 ]
ok "... answered in time ($((t1 - t0)) ms)" [ $((t1 - t0)) -lt 1500 ]
ok "... the answer says why and names the message" \
    eval 'grep -q "reply-timeout" "$T/to-b.body" && grep -q "\"id\":\"$(cat "$T/to-b.id")\"" "$T/to-b.body"'
ok "the slow request itself: 504 too" [ "$(cat "$T/to-a.code")" = 504 ]
ok "both are processed after all" \
    wait_for 50 eval '[ -f "$T/slow/$(cat "$T/to-a.id")" ] && [ -f "$T/slow/$(cat "$T/to-b.id")" ]'
ok "... each once" [ "$(count_files "$T/slow")" = 2 ]
ok "a request after that is answered normally" [ "$(post_h /orders '{"total":1}' application/json)" = 200 ]

# ---- a client that hangs up while waiting ----
slowpost "$PORT" hang-a 1500 &
pa=$!
sleep 0.2
curl -s -o /dev/null --max-time 0.3 --data-binary hang-b "http://127.0.0.1:$PORT/slow"
ok "a client that gave up while waiting got no answer" [ $? = 28 ]
wait "$pa"
ok "... the request before it was answered 200" [ "$(cat "$T/hang-a.code")" = 200 ]
ok "... the abandoned request is processed" wait_for 50 dir_has "$T/slow" hang-b
ok "... and esbd answers the next one" [ "$(post_h /orders '{"total":2}' application/json)" = 200 ]

# ---- 50 concurrent requests ----
cfg="$T/many.cfg"
for i in $(seq 1 50); do
    printf 'url = "http://127.0.0.1:%s/echo"\ndata-binary = "n-%s"\nheader = "x-n: %s"\n' \
        "$PORT" "$i" "$i"
    printf 'output = "%s/resp/%s"\nmax-time = 30\n' "$T" "$i"
    printf 'write-out = "%%{http_code} %%header{x-n} %s\\n"\n' "$i"
    [ "$i" -lt 50 ] && echo next
done >"$cfg"
curl -s -Z --parallel-max 50 -K "$cfg" >"$T/many.out" 2>/dev/null
ok "50 concurrent requests: 50 answers" [ "$(wc -l <"$T/many.out")" = 50 ]
ok "... all 200, each with its own x-n" \
    [ "$(awk '$1 == 200 && $2 == $3' "$T/many.out" | wc -l)" = 50 ]
right=0
for i in $(seq 1 50); do [ "$(cat "$T/resp/$i" 2>/dev/null)" = "echo:n-$i" ] && right=$((right + 1)); done
ok "... each body is its own request's result" [ "$right" = 50 ]

# ---- a reload while requests wait: they are answered by the new config ----
slowpost "$PORT" hup-a 1000 &
pa=$!
sleep 0.2
slowpost "$PORT" hup-b 0 &
pb=$!
sleep 0.2
kill -HUP "$ESBD_PID"
wait "$pa" "$pb"
ok "SIGHUP while two requests wait: both answered 200" \
    eval '[ "$(cat "$T/hup-a.code")$(cat "$T/hup-b.code")" = 200200 ] && log_has "reloaded config"'

# ---- SIGTERM while requests wait: a clean stop ----
slowpost "$PORT" term-a 1500 &
pa=$!
sleep 0.2
slowpost "$PORT" term-b 0 &
pb=$!
sleep 0.3
ok "SIGTERM while two requests wait: esbd stops cleanly" esbd_stop
wait "$pa" "$pb"
ok "... the waiting client got 503 with its message id" \
    eval '[ "$(cat "$T/term-b.code")" = 503 ] && grep -q "\"id\":\"$(cat "$T/term-b.id")\"" "$T/term-b.body"'
esbd_start
ok "... and after the restart both are processed" \
    wait_for 100 eval 'dir_has "$T/slow" term-a && dir_has "$T/slow" term-b'

# ---- SIGKILL while requests wait ----
for n in 1 2 3 4; do
    slowpost "$PORT" kill-$n $([ $n = 1 ] && echo 2000 || echo 0) &
    eval "pk$n=\$!"
    sleep 0.1
done
sleep 0.3
esbd_kill
wait "$pk1" "$pk2" "$pk3" "$pk4"
lost=0
for n in 1 2 3 4; do [ "$(cat "$T/kill-$n.code")" = 000 ] || lost=$((lost + 1)); done
ok "SIGKILL while 4 requests wait: every client sees a connection error" [ "$lost" = 0 ]
esbd_start
all_kill() { for n in 1 2 3 4; do dir_has "$T/slow" "kill-$n" || return 1; done; }
ok "... and after the restart all 4 messages are processed" wait_for 100 all_kill
ok "request-reply works after the restart" [ "$(post_h /orders '{"total":3}' application/json)" = 200 ]

ok "esbd stops cleanly" esbd_stop
ok "the message of the 502 is in dlq.xml" eval 'browse dlq.xml 2>/dev/null | grep -q "$bad_id"'
ok "no sanitizer or panic report in the log" not grep -Eq 'MHD_PANIC|runtime error|AddressSanitizer|Assertion' "$T/esbd.log"
done_testing

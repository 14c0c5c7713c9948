#!/usr/bin/env bash
# http-in -> route -> http-out against a real HTTP server (tests/tools/http-sink)
# on loopback:
#   - every body POSTed to esbd arrives at the sink exactly once, byte for
#     byte (a 200 KB one too), at the URL template's path /recv/{id};
#   - each request carries Idempotency-Key = the message id esbd answered
#     with (202, esb-message-id), and the message's content type;
#   - traceparent and tracestate are passed on unchanged; forward-headers
#     sends the matching headers and no other;
#   - the endpoint keeps at most max-in-flight (4) requests open and reuses
#     its keep-alive connections: sink connections <= 4 << requests;
#   - esbd never logs a body.
. "$(dirname "$0")/lib.sh"
esb_setup
sink_start sink
SP=$SINK_PORT
N=120
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <http-out id="sink" url="http://127.0.0.1:$SP/recv/{id}" max-in-flight="4"
              forward-headers="x-order-*"/>
  </connectors>
  <route id="r" from="http-in:web" path="/in">
    <to uri="http-out:sink"/>
    <retry max-attempts="3" initial-delay="200ms" jitter="0"/>
  </route>
</esb>
XML
# Each answer takes 30 ms, so deliveries overlap and the in-flight bound shows.
ok "sink told to answer 200 after 30 ms" sink_ctl "$SP" '{"mode":"200","delay_ms":30,"reset_stats":true}'
esbd_start

post_many /in basic 1 "$N" 8
TP=00-4bf92f3577b34ea8e2f1f6b1e2c3a4d5-00f067aa0ba902b7-01
code=$(post_h /in '{"order":42,"region":"EU"}' 'application/json; charset=utf-8' \
    -H "traceparent: $TP" -H 'tracestate: vendor=abc' -H 'x-order-id: 42' -H 'x-secret: hush')
echo "$code $(header_of esb-message-id) json-1" >>"$T/posted.basic"
code=$(post_h /in '<order><total>7</total></order>' application/xml)
echo "$code $(header_of esb-message-id) xml-1" >>"$T/posted.basic"
head -c 200000 /dev/zero | tr '\0' 'b' >"$T/big.body"
code=$(curl -s -D "$T/big.headers" -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/big.body" \
    "http://127.0.0.1:$PORT/in")
echo "$code $(tr -d '\r' <"$T/big.headers" | sed -n 's/^esb-message-id: //Ip') big-1" >>"$T/posted.basic"
total=$((N + 3))
ok "all $total POSTs answered 202 with a message id" \
    eval '[ "$(awk '"'"'$1 == 202 && $2 != ""'"'"' "$T/posted.basic" | wc -l)" = "$total" ]'

delivered() { [ "$(grep -c '"status":200' "$T/sink.log")" -ge "$total" ]; }
ok "the sink received all $total within 20 s" wait_for 200 delivered
sleep 0.5 # anything extra (a duplicate) would arrive now
sink_tsv "$T/sink.log" >"$T/sink.tsv"
nreq=$(wc -l <"$T/sink.log")
diag "sink log: $nreq requests"
ok "exactly $total requests, all answered 200 (no retries, no duplicates)" \
    eval '[ "$nreq" = "$total" ] && [ "$(cut -f2 "$T/sink.tsv" | sort -u)" = 200 ]'

# name -> id from the 202 answers; name of each sink body
awk '{ print $3, $2 }' "$T/posted.basic" | sort >"$T/want"
awk -F'\t' '{
    b = $4
    if (b ~ /^basic-[0-9]+$/) n = b
    else if (b ~ /^\{/) n = "json-1"
    else if (b ~ /^<order>/) n = "xml-1"
    else if (b ~ /^b+$/) n = "big-1"
    else n = "?" b
    print n, $3 }' "$T/sink.tsv" | sort >"$T/got"
ok "every body arrived once, each with Idempotency-Key = its message id" \
    diff -u "$T/want" "$T/got"
ok "the URL template put the id in the path: /recv/<Idempotency-Key>" \
    eval '[ -z "$(awk -F"\t" '"'"'$5 != "/recv/" $3'"'"' "$T/sink.tsv")" ]'
ok "text/plain bodies keep their content type" \
    eval '[ "$(awk -F"\t" '"'"'$4 ~ /^basic-/ && $6 == "text/plain"'"'"' "$T/sink.tsv" | wc -l)" = "$N" ]'
line_of() { grep -F "\"idempotency_key\":\"$(awk -v n="$1" '$3 == n { print $2 }' "$T/posted.basic")\"" "$T/sink.log"; }
json_line=$(line_of json-1)
ok "the JSON body arrived byte for byte" grep -qF '"body":"{\"order\":42,\"region\":\"EU\"}"' <<<"$json_line"
ok "...with its content type 'application/json; charset=utf-8'" \
    grep -qF '"content_type":"application/json; charset=utf-8"' <<<"$json_line"
ok "...with the client's traceparent unchanged" grep -qF "\"traceparent\":\"$TP\"" <<<"$json_line"
ok "...and its tracestate" grep -qF '"tracestate":"vendor=abc"' <<<"$json_line"
ok "...and x-order-id (forward-headers x-order-*)" grep -qF '"x-order-id":"42"' <<<"$json_line"
ok "...but not x-secret (not in forward-headers)" not grep -qF 'x-secret' <<<"$json_line"
ok "...nor any esb-* header" not grep -qE '"esb-[a-z0-9-]+":' <<<"$json_line"
xml_line=$(line_of xml-1)
ok "the XML body arrived with content type application/xml" \
    grep -qF '"content_type":"application/xml","headers"' <<<"$xml_line"
big_line=$(line_of big-1)
big_len=$(sed -n 's/.*"body":"\(b*\)"}$/\1/p' <<<"$big_line" | tr -d '\n' | wc -c)
ok "the 200 KB body arrived whole ($big_len bytes)" [ "$big_len" = 200000 ]
ok "...as application/octet-stream, without Expect: 100-continue" \
    eval 'grep -qF "\"content_type\":\"application/octet-stream\"" <<<"$big_line" && ! grep -qi "\"expect\"" <<<"$big_line"'

sink_stats "$SP"
conns=$(($(stat_of connections) - 1)) # less the /_stats request's own
maxc=$(stat_of max_concurrent)
reqs=$(stat_of requests)
diag "sink: $reqs requests over $conns TCP connections; at most $maxc at once"
ok "never more than max-in-flight=4 requests open at once, and 4 were used" [ "$maxc" = 4 ]
ok "keep-alive: at most 4 connections for $reqs requests" \
    eval '[ "$conns" -ge 1 ] && [ "$conns" -le 4 ] && [ "$reqs" -ge $((conns * 25)) ]'
ok "esbd logged no body" eval '! grep -qE "basic-[0-9]|order>|bbbbbbbb|region" "$T/esbd.log"'
ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

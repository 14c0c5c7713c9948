#!/usr/bin/env bash
# Content-based routing end to end: a real esbd on loopback, driven by curl.
# XML by XPath, JSON by JSON path, text by regex and by header, topic fan-out
# to two routes, queue hand-off, file-out; 404/405/413 answers.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/out-big" "$T/out-small" "$T/out-eu" "$T/out-urgent" "$T/out-hdr" \
    "$T/out-a" "$T/out-b" "$T/out-other" "$T/out-q"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" max-body="1KB"/>
    <file-out id="big" dir="@T@/out-big"/>
    <file-out id="small" dir="@T@/out-small"/>
    <file-out id="eu" dir="@T@/out-eu"/>
    <file-out id="urgent" dir="@T@/out-urgent"/>
    <file-out id="hdr" dir="@T@/out-hdr"/>
    <file-out id="a" dir="@T@/out-a"/>
    <file-out id="b" dir="@T@/out-b"/>
    <file-out id="other" dir="@T@/out-other"/>
    <file-out id="q" dir="@T@/out-q"/>
  </connectors>
  <route id="xml-orders" from="http-in:web" path="/xml">
    <choice>
      <when xpath="/order/total &gt; 1000"><to uri="file-out:big"/></when>
      <otherwise><to uri="file-out:small"/></otherwise>
    </choice>
  </route>
  <route id="json-orders" from="http-in:web" path="/json">
    <choice>
      <when json="$.region" equals="EU"><to uri="topic:eu"/></when>
      <otherwise><to uri="queue:rest"/></otherwise>
    </choice>
  </route>
  <route id="text" from="http-in:web" path="/text">
    <choice>
      <when regex="^URGENT:"><to uri="file-out:urgent"/></when>
      <when header="x-kind" equals="audit"><to uri="file-out:hdr"/></when>
      <otherwise><to uri="file-out:other"/></otherwise>
    </choice>
  </route>
  <route id="eu-a" from="topic:eu"><to uri="file-out:a"/></route>
  <route id="eu-b" from="topic:eu"><to uri="file-out:b"/></route>
  <route id="rest" from="queue:rest"><to uri="file-out:q"/></route>
</esb>
XML
esbd_start

ok "XML total 5000 accepted (202)" [ "$(post /xml '<order><total>5000</total></order>' application/xml)" = 202 ]
ok "202 body carries the message id" grep -q '"id"' "$T/last-body"
ok "XML total 10 accepted" [ "$(post /xml '<order><total>10</total></order>' application/xml)" = 202 ]
ok "XPath: big order routed to out-big" wait_for 50 dir_has "$T/out-big" "<total>5000</total>"
ok "XPath: small order routed to out-small" wait_for 50 dir_has "$T/out-small" "<total>10</total>"
ok "XPath: big not in small" not dir_has "$T/out-small" "5000"

ok "JSON EU accepted" [ "$(post /json '{"region":"EU","n":1}' application/json)" = 202 ]
ok "JSON US accepted" [ "$(post /json '{"region":"US","n":2}' application/json)" = 202 ]
ok "topic fan-out: subscriber a got the EU order" wait_for 50 dir_has "$T/out-a" '"region":"EU"'
ok "topic fan-out: subscriber b got the EU order" wait_for 50 dir_has "$T/out-b" '"region":"EU"'
ok "queue hand-off: US order reached the queue route" wait_for 50 dir_has "$T/out-q" '"region":"US"'
ok "US order not on the topic" not dir_has "$T/out-a" '"region":"US"'

ok "text URGENT accepted" [ "$(post /text 'URGENT: disk full')" = 202 ]
ok "text with header accepted" [ "$(post /text 'routine' text/plain -H 'x-kind: audit')" = 202 ]
ok "text plain accepted" [ "$(post /text 'hello')" = 202 ]
ok "regex routes URGENT" wait_for 50 dir_has "$T/out-urgent" "URGENT: disk full"
ok "header routes audit" wait_for 50 dir_has "$T/out-hdr" "routine"
ok "otherwise catches the rest" wait_for 50 dir_has "$T/out-other" "hello"

ok "unknown path answers 404" [ "$(post /nope 'x')" = 404 ]
ok "GET answers 405" [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/xml")" = 405 ]
big=$(head -c 5000 /dev/zero | tr '\0' 'x')
ok "body over max-body answers 413" [ "$(post /text "$big")" = 413 ]
ok "esbd still alive" esbd_alive

# http-in's threads run at esbd's niceness + 5 (attribute nice, default 5),
# so that routing what was accepted gets the CPU before new requests.
thread_nice() { # thread_nice COMM: the niceness of esbd's threads named COMM
    local t
    for t in /proc/"$ESBD_PID"/task/*; do
        [ "$(cat "$t/comm")" = "$1" ] && awk '{ print $19 }' "$t/stat"
    done | sort -u
}
base=$(thread_nice esbd)
want=$((base + 5 > 19 ? 19 : base + 5))
ok "http-in threads run at niceness $want (esbd's $base + 5)" \
    eval '[ "$(thread_nice esb-http-0)" = "$want" ] && [ "$(thread_nice esb-http-1)" = "$want" ]'
ok "the workers keep esbd's niceness" [ "$(thread_nice esb-worker-0)" = "$base" ]

# http-in threads share the address through SO_REUSEPORT; a second esbd on
# the same address must still be refused, not silently take a share of the
# connections.
mkdir -p "$T/second"
sed -e "s|$T/bus|$T/second/bus|" -e 's|<http-in |<http-in threads="4" |' "$T/esb.xml" >"$T/second/esb.xml"
ok "a second esbd on the same address exits non-zero" not timeout 10 "$ESBD" "$T/second/esb.xml" 2>"$T/second/log"
ok "... saying the address is in use" grep -q "cannot listen on 127.0.0.1:$PORT: Address already in use" "$T/second/log"
for i in 1 2 3 4 5 6 7 8; do post /text "after-second-$i" >/dev/null; done
ok "every request still reaches the first esbd" wait_for 50 eval '[ "$(grep -l "after-second-" "$T"/out-other/* 2>/dev/null | wc -l)" = 8 ]'
ok "exactly one file per routed message in out-big" [ "$(count_files "$T/out-big")" = 1 ]
ok "clean stop on SIGTERM" esbd_stop
done_testing

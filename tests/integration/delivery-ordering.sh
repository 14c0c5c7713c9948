#!/usr/bin/env bash
# Ordering keys end to end (issue 5, "Must show" #5): a route with
# ordering-key="{header:customer}" delivers to a real HTTP sink. The sink
# answers 503 three times to A-2, then 200. The messages of customer A must
# reach the sink (successfully) in order A-1..A-5 — A-3 is never even tried
# before A-2 succeeded — while customer B's messages are not held back: they
# are all delivered before A-2's retries end.
. "$(dirname "$0")/lib.sh"
esb_setup
sink_start sink
SP=$SINK_PORT
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <bus dir="@T@/bus"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <http-out id="sink" url="http://127.0.0.1:$SP/o"/>
  </connectors>
  <route id="o" from="http-in:web" path="/o" ordering-key="{header:customer}">
    <to uri="http-out:sink"/>
    <retry max-attempts="8" initial-delay="400ms" multiplier="1" max-delay="1s" jitter="0"/>
  </route>
</esb>
XML
esbd_start
ok "sink: 503 three times for A-2" sink_ctl "$SP" '{"mode":"503","match":"A-2","count":3}'
sent=0
for i in 1 2 3 4 5; do
    [ "$(post_h /o "A-$i" text/plain -H 'customer: A')" = 202 ] && sent=$((sent + 1))
    [ "$(post_h /o "B-$i" text/plain -H 'customer: B')" = 202 ] && sent=$((sent + 1))
done
ok "10 messages accepted" [ "$sent" = 10 ]
a_done() { [ "$(sink_tsv "$T/sink.log" | awk -F'\t' '$2 == 200 && $4 ~ /^A-/' | wc -l)" -ge 5 ]; }
ok "all of A delivered (after A-2's retries)" wait_for 150 a_done
sink_tsv "$T/sink.log" >"$T/seen.tsv"
ok_a=$(awk -F'\t' '$2 == 200 && $4 ~ /^A-/ { printf "%s ", $4 }' "$T/seen.tsv")
ok "A delivered in order: $ok_a" [ "$ok_a" = "A-1 A-2 A-3 A-4 A-5 " ]
ok "A-2 was answered 503 exactly 3 times" \
    [ "$(awk -F'\t' '$2 == 503 && $4 == "A-2"' "$T/seen.tsv" | wc -l)" = 3 ]
first_a3=$(awk -F'\t' '$4 == "A-3" { print NR; exit }' "$T/seen.tsv")
a2_ok=$(awk -F'\t' '$4 == "A-2" && $2 == 200 { print NR; exit }' "$T/seen.tsv")
ok "A-3 was first tried only after A-2 succeeded (lines $first_a3 > $a2_ok)" \
    eval '[ -n "$first_a3" ] && [ "$first_a3" -gt "$a2_ok" ]'
last_b=$(awk -F'\t' '$4 ~ /^B-/ && $2 == 200 { n = NR } END { print n }' "$T/seen.tsv")
ok "B was not held back: all of B delivered before A-2 succeeded ($last_b < $a2_ok)" \
    eval '[ -n "$last_b" ] && [ "$last_b" -lt "$a2_ok" ]'
ok_b=$(awk -F'\t' '$2 == 200 && $4 ~ /^B-/ { printf "%s ", $4 }' "$T/seen.tsv")
ok "B delivered once each: $ok_b" [ "$(echo "$ok_b" | wc -w)" = 5 ]
ok "clean stop" esbd_stop
done_testing

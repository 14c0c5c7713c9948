#!/usr/bin/env bash
# The circuit breaker's thresholds come from http-out's breaker-failures and
# breaker-cooldown (issue 5: "after N consecutive failures, stop calling it
# for a cool-down, then probe; state visible in logs"), against real HTTP
# servers (tests/tools/http-sink) on loopback:
#   - endpoint brk (breaker-failures=2, breaker-cooldown=2s, one request at
#     a time) answered 503: the breaker opens after exactly 2 failed
#     requests; during each 2 s cool-down the sink sees no request at all,
#     although the messages are due for a retry every 100 ms; after it,
#     exactly one probe; a failed probe opens the breaker again. Each change
#     (OPEN, HALF-OPEN, CLOSED) is logged. Once the sink answers 200, the
#     next probe closes the breaker and every message is delivered once.
#   - endpoint nob (breaker-failures=0: no breaker) answered 503: all its
#     attempts reach the sink, 100 ms apart, and nothing about a breaker is
#     logged for it.
. "$(dirname "$0")/lib.sh"
esb_setup
COOL=2000
sink_start brk
BP=$SINK_PORT
sink_start nob
NP=$SINK_PORT
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <http-out id="brk" url="http://127.0.0.1:$BP/b/{id}" max-in-flight="1"
              breaker-failures="2" breaker-cooldown="${COOL}ms"/>
    <http-out id="nob" url="http://127.0.0.1:$NP/n/{id}" breaker-failures="0"/>
  </connectors>
  <route id="b" from="http-in:web" path="/b">
    <to uri="http-out:brk"/>
    <retry max-attempts="1000" initial-delay="100ms" multiplier="1" max-delay="100ms" jitter="0"/>
  </route>
  <route id="n" from="http-in:web" path="/n">
    <to uri="http-out:nob"/>
    <retry max-attempts="20" initial-delay="100ms" multiplier="1" max-delay="100ms" jitter="0"/>
  </route>
</esb>
XML
ok "esbctl check accepts breaker-failures and breaker-cooldown" "$ESBCTL" check "$T/esb.xml"
esbd_start
ok "both sinks answer 503" \
    eval 'sink_ctl "$BP" "{\"mode\":\"503\",\"body\":\"down\"}" && sink_ctl "$NP" "{\"mode\":\"503\",\"body\":\"down\"}"'
for i in 1 2 3; do
    [ "$(post /b "b-$i")" = 202 ] || diag "b-$i not accepted"
done
[ "$(post /n n-1)" = 202 ] || diag "n-1 not accepted"

opens() { [ "$(breaker_states brk | grep -c ' OPEN$')" -ge "$1" ]; }
ok "the breaker of brk opens, and opens again after each failed probe (3 times)" wait_for 150 opens 3
ok "sink fixed: 200" sink_ctl "$BP" '{"mode":"200"}'
closed() { breaker_states brk | tail -n1 | grep -q ' CLOSED$'; }
ok "after the next cool-down its probe closes the breaker" wait_for 60 closed
delivered() { [ "$(grep -c '"status":200' "$T/brk.log")" -ge 3 ]; }
ok "then every message reaches the sink" wait_for 50 delivered
nob_done() { [ "$(grep -c . "$T/nob.log")" -ge 20 ]; }
ok "nob: all 20 attempts of n-1 made" wait_for 100 nob_done
sleep 0.5

breaker_states brk >"$T/states"
sink_tsv "$T/brk.log" | awk -F'\t' '{ print $1, $2, $4 }' >"$T/brk.req" # MS STATUS BODY
t0=$(head -n1 "$T/brk.req" | cut -d' ' -f1)
diag "brk breaker (ms from the first request): $(awk -v s="$t0" '{ printf "%s@%d ", $2, $1 - s }' "$T/states")"
diag "brk requests (ms, status, body): $(awk -v s="$t0" '{ printf "%d:%s:%s ", $1 - s, $2, $3 }' "$T/brk.req")"

read -r o1 o2 o3 < <(awk '$2 == "OPEN" { printf "%s ", $1 }' "$T/states")
before=$(awk -v o="$o1" '$1 <= o' "$T/brk.req" | wc -l)
ok "it opened after exactly breaker-failures = 2 failed requests ($before)" [ "$before" = 2 ]
ok "the first OPEN is logged with the count and the cool-down" \
    log_has "\[endpoint:brk\] circuit breaker OPEN after 2 consecutive failures \(HTTP 503 from .*: down\); pausing deliveries for ${COOL}ms"
# Each cool-down: no request from OPEN until OPEN + COOL (50 ms for the log
# line coming a moment after the breaker's clock was read); then the probe,
# within 1 s.
for o in "$o1" "$o2" "$o3"; do
    quiet=$(awk -v a="$o" -v b=$((o + COOL - 50)) '$1 > a && $1 < b' "$T/brk.req" | wc -l)
    first=$(awk -v a="$o" '$1 > a { print $1; exit }' "$T/brk.req")
    ok "cool-down from OPEN at +$((o - t0)) ms: no request for ${COOL} ms ($quiet), then a probe at +$((${first:-0} - o)) ms" \
        eval '[ "$quiet" = 0 ] && [ -n "$first" ] && [ "$first" -ge $((o + COOL - 50)) ] && [ "$first" -le $((o + COOL + 1000)) ]'
done
probes12=$(awk -v a="$o1" -v b="$o2" '$1 > a && $1 <= b' "$T/brk.req" | wc -l)
probes23=$(awk -v a="$o2" -v b="$o3" '$1 > a && $1 <= b' "$T/brk.req" | wc -l)
ok "a single probe between OPENs, answered 503, opens it again ($probes12, $probes23)" \
    eval '[ "$probes12" = 1 ] && [ "$probes23" = 1 ]'
seqstates=$(awk '{ printf "%s ", $2 }' "$T/states")
ok "logged in order: OPEN HALF-OPEN OPEN HALF-OPEN OPEN HALF-OPEN CLOSED ($seqstates)" \
    [ "$seqstates" = "OPEN HALF-OPEN OPEN HALF-OPEN OPEN HALF-OPEN CLOSED " ]
ok "HALF-OPEN is logged as sending one probe, CLOSED as the endpoint answering" \
    eval 'log_has "\[endpoint:brk\] circuit breaker HALF-OPEN: sending one probe" &&
          log_has "\[endpoint:brk\] circuit breaker CLOSED: the endpoint answers again"'
each_once=$(awk '$2 == 200 { print $3 }' "$T/brk.req" | sort | uniq -c | awk '$1 == 1' | wc -l)
ok "b-1, b-2, b-3 each answered 200 exactly once ($each_once)" [ "$each_once" = 3 ]

sink_tsv "$T/nob.log" | awk -F'\t' '{ print $1 }' >"$T/nob.t"
maxgap=$(awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { print m + 0 }' "$T/nob.t")
ok "nob (breaker-failures=0): 20 attempts, never held back (largest gap $maxgap ms)" \
    eval '[ "$(wc -l <"$T/nob.t")" = 20 ] && [ "$maxgap" -lt 1000 ]'
ok "nob: nothing logged about a breaker" not log_has "\[endpoint:nob\] circuit breaker"
ok "nob: n-1 dead-lettered after its 20 attempts" \
    log_has "dead-lettered id=.* to dlq.n: delivery failed to nob after 20 attempts"
ok "clean stop" esbd_stop
done_testing

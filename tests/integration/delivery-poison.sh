#!/usr/bin/env bash
# Poison messages (issue 5, "Must show" #3), against a real HTTP server
# (tests/tools/http-sink) on loopback and esbctl through the admin API:
#   - the sink always answers 400 to one body: it is dead-lettered after
#     exactly 1 attempt; it answers 503 forever to another: dead-lettered
#     after exactly max-attempts (3), the retries spaced by the policy;
#   - both dead letters carry the full reason (HTTP status, URL, the sink's
#     answer body, the attempts) in `esbctl dlq list` and `dlq show`, and the
#     original body;
#   - each dead letter counts the attempts made (1 and 3) and keeps the
#     history of every attempt: exactly 1 and exactly 3 lines, numbered,
#     with the UTC time (ms) the attempt started (= when the sink got it,
#     increasing by the policy's spacing), the class and the error; in the
#     admin API's JSON too, and the same after esbd restarts;
#   - the other messages flow meanwhile: those sent while the 503 one was
#     being retried arrive before its last attempt, each exactly once;
#   - once the sink is fixed, `esbctl dlq replay --all` delivers each of the
#     two exactly once more, with the same Idempotency-Key (message id); a
#     second replay finds nothing to do.
. "$(dirname "$0")/lib.sh"
esb_setup
sink_start sink
SP=$SINK_PORT
APORT=$(pick_free_port)
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always"/>
  <workers count="2"/>
  <admin listen="127.0.0.1:$APORT" token-file="@T@/admin.token"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <http-out id="sink" url="http://127.0.0.1:$SP/p/{id}"/>
  </connectors>
  <route id="p" from="http-in:web" path="/p">
    <to uri="http-out:sink"/>
    <retry max-attempts="3" initial-delay="500ms" multiplier="2" max-delay="4s" jitter="0"/>
    <dead-letter queue="dlq.poison"/>
  </route>
</esb>
XML
ctl() { "$ESBCTL" --config "$T/esb.xml" "$@"; }
esbd_start

ok "sink: 400 for poison-400, 503 for poison-503 (always)" \
    eval 'sink_ctl "$SP" "{\"mode\":\"400\",\"match\":\"poison-400\",\"body\":\"invalid order: field total is missing\"}" &&
          sink_ctl "$SP" "{\"mode\":\"503\",\"match\":\"poison-503\",\"body\":\"backend overloaded, try later\",\"add\":true}"'
: >"$T/posted"
send() { # send BODY: POST it, log "STATUS ID BODY"
    local code
    code=$(post_h /p "$1")
    echo "$code $(header_of esb-message-id) $1" >>"$T/posted"
}
for i in $(seq 1 10); do send "ok-$i"; done
send poison-400
send poison-503
for i in $(seq 11 50); do
    send "ok-$i"
    sleep 0.05
done
ok "all 52 POSTs answered 202" [ "$(awk '$1 == 202' "$T/posted" | wc -l)" = 52 ]
id_of() { awk -v b="$1" '$3 == b { print $2 }' "$T/posted"; }

dlq_n() { ctl queues 2>/dev/null | awk '$1 == "dlq.poison" { print $2 }'; }
dlq_is() { [ "$(dlq_n)" = "$1" ]; }
ok "both poison messages reach dlq.poison" wait_for 100 dlq_is 2
oks_done() { [ "$(grep -c '"status":200' "$T/sink.log")" -ge 50 ]; }
ok "the 50 others are delivered" wait_for 100 oks_done
sleep 1 # one more attempt of either would show now
sink_tsv "$T/sink.log" >"$T/sink.tsv"
attempts() { awk -F'\t' -v b="$1" '$4 == b' "$T/sink.tsv" | wc -l; }
ok "poison-400: exactly 1 attempt ($(attempts poison-400))" [ "$(attempts poison-400)" = 1 ]
ok "poison-503: exactly max-attempts = 3 attempts ($(attempts poison-503))" [ "$(attempts poison-503)" = 3 ]
gaps=$(awk -F'\t' '$4 == "poison-503" { if (n++) printf "%s%d", sep, $1 - lt; sep = " "; lt = $1 }' "$T/sink.tsv")
diag "poison-503 retried after $gaps ms (policy 500 1000)"
read -r g1 g2 <<<"$gaps"
ok "poison-503's retries follow the policy +-25 % ($gaps)" \
    eval '[ "${g1:-0}" -ge 375 ] && [ "${g1:-0}" -le 625 ] && [ "${g2:-0}" -ge 750 ] && [ "${g2:-0}" -le 1250 ]'
awk -F'\t' '$4 ~ /^ok-/ && $2 == 200 { print $4 }' "$T/sink.tsv" | sort >"$T/ok.200"
ok "every other message delivered exactly once" \
    eval '[ "$(wc -l <"$T/ok.200")" = 50 ] && [ -z "$(uniq -d "$T/ok.200")" ] && [ "$(awk -F"\t" "\$4 ~ /^ok-/" "$T/sink.tsv" | wc -l)" = 50 ]'
read -r first last < <(awk -F'\t' '$4 == "poison-503" { if (!f) f = $1; l = $1 } END { print f, l }' "$T/sink.tsv")
meanwhile=$(awk -F'\t' -v a="$first" -v b="$last" '$4 ~ /^ok-/ && $1 > a && $1 < b' "$T/sink.tsv" | wc -l)
ok "others flowed meanwhile: $meanwhile delivered between poison-503's first and last attempt" \
    [ "$meanwhile" -ge 10 ]

# ---- what the operator sees ----
ctl dlq list dlq.poison >"$T/list.out" 2>&1
sed 's/^/# /' "$T/list.out"
seq_of() { awk -v id="$1" '$2 == id { print $1 }' "$T/list.out"; }
s400=$(seq_of "$(id_of poison-400)")
s503=$(seq_of "$(id_of poison-503)")
ok "dlq list names both by id" eval '[ -n "$s400" ] && [ -n "$s503" ]'
ok "dlq list: each with its reason's start (outcome, attempts, status)" \
    eval 'grep -q "^$s400 .*rejected to sink after 1 attempt: HTTP 400 from http" "$T/list.out" &&
          grep -q "^$s503 .*delivery failed to sink after 3 attempts: HTTP 503 from http" "$T/list.out"'
att_col() { awk -v s="$1" '$1 == s { print $3 }' "$T/list.out"; }
ok "dlq list: ATTEMPTS counts the attempts made: 1 and 3 ($(att_col "$s400"), $(att_col "$s503"))" \
    eval '[ "$(att_col "$s400")" = 1 ] && [ "$(att_col "$s503")" = 3 ]'
ctl dlq show dlq.poison "${s400:-0}" >"$T/show400.out" 2>&1
ctl dlq show dlq.poison "${s503:-0}" >"$T/show503.out" 2>&1
sed 's/^/# show 400: /' "$T/show400.out" | cut -c1-220
sed 's/^/# show 503: /' "$T/show503.out" | cut -c1-220
ok "dlq show (400): rejected after 1 attempt, HTTP 400, the URL, the sink's answer" \
    grep -qE "rejected to sink after 1 attempt: HTTP 400 from http://127\.0\.0\.1:$SP/p/$(id_of poison-400): invalid order: field total is missing" "$T/show400.out"
ok "dlq show (503): failed after 3 attempts, HTTP 503, the URL, the sink's answer" \
    grep -qE "delivery failed to sink after 3 attempts: HTTP 503 from http://127\.0\.0\.1:$SP/p/$(id_of poison-503): backend overloaded, try later" "$T/show503.out"
ok "dlq show keeps the original body" \
    eval 'grep -q "poison-400" "$T/show400.out" && grep -q "poison-503" "$T/show503.out"'
ok "dlq show names where it died (deliver:sink) and the route" \
    eval 'grep -q "deliver:sink" "$T/show503.out" && grep -q "esb-route.*p" "$T/show503.out"'

# ---- the attempt history ----
# hist FILE: the history lines of a `dlq show` as "N MS CLASS ERROR..." (MS:
# the attempt's start, ms since the epoch, from its UTC ISO 8601 time).
hist() {
    awk '/^history:/ { on = 1; next } on && /^ +[0-9]+  [0-9][0-9][0-9][0-9]-/ { print; next } on { exit }' "$1" |
        while read -r n when cls err; do
            echo "$n $(date -u -d "$when" +%s%3N) $cls $err"
        done
}
hist "$T/show503.out" >"$T/hist503"
hist "$T/show400.out" >"$T/hist400"
sed 's/^/# history 503: /' "$T/hist503" | cut -c1-160
ok "dlq show: attempts 1 and 3" \
    eval 'grep -q "^attempts: *1$" "$T/show400.out" && grep -q "^attempts: *3$" "$T/show503.out"'
ok "poison-400's history: exactly 1 attempt, numbered 1, class http-status, HTTP 400 and the sink's answer" \
    eval '[ "$(wc -l <"$T/hist400")" = 1 ] &&
          grep -q "^1 [0-9]* http-status HTTP 400 from http://127.0.0.1:$SP/p/.*: invalid order" "$T/hist400"'
ok "poison-503's history: exactly max-attempts = 3 attempts, numbered 1..3, each http-status HTTP 503 with the answer" \
    eval '[ "$(wc -l <"$T/hist503")" = 3 ] && [ "$(awk "{ print \$1 }" "$T/hist503" | tr "\n" " ")" = "1 2 3 " ] &&
          [ "$(grep -c "^[123] [0-9]* http-status HTTP 503 from .*: backend overloaded, try later$" "$T/hist503")" = 3 ]'
ok "poison-503's attempt times increase, spaced by the policy (500, 1000 ms) +-25 %" \
    awk 'NR > 1 { g = $2 - p; if (g < lo[NR] || g > hi[NR]) bad = 1 } { p = $2 }
         BEGIN { lo[2] = 375; hi[2] = 625; lo[3] = 750; hi[3] = 1250 } END { exit bad }' "$T/hist503"
# Each recorded start is the moment the dispatcher started that request:
# the sink got it at most a moment later (same wall clock).
awk -F'\t' '$4 == "poison-503" { print $1 }' "$T/sink.tsv" | paste -d' ' - <(awk '{ print $2 }' "$T/hist503") >"$T/times503"
sed 's/^/# sink got it at, history says: /' "$T/times503"
ok "each history time is when the sink saw that attempt (0..500 ms before)" \
    awk '{ d = $1 - $2; if (d < 0 || d > 500) bad = 1 } END { exit bad || NR != 3 }' "$T/times503"
ctl dlq show dlq.poison "${s503:-0}" --json >"$T/show503.json" 2>&1
ok "the admin API's JSON has the history: 3 objects with time (UTC ISO 8601, ms), class, error" \
    eval '[ "$(grep -o "\"time\":\"[0-9-]*T[0-9:]*\.[0-9][0-9][0-9]Z\",\"class\":\"http-status\",\"error\":\"HTTP 503 from " "$T/show503.json" | wc -l)" = 3 ] &&
          grep -q "\"attempt\":3," "$T/show503.json"'
ok "esbd restarts" eval 'esbd_stop && esbd_start'
ctl dlq show dlq.poison "${s503:-0}" >"$T/show503b.out" 2>&1
hist "$T/show503b.out" >"$T/hist503b"
ok "the history is the same after the restart" \
    eval '[ -s "$T/hist503b" ] && cmp -s "$T/hist503" "$T/hist503b" && grep -q "^attempts: *3$" "$T/show503b.out"'
ok "the log says why each was dead-lettered" \
    eval 'log_has "dead-lettered id=$(id_of poison-400) to dlq.poison: rejected" &&
          log_has "dead-lettered id=$(id_of poison-503) to dlq.poison: delivery failed"'

# ---- fix the sink, replay ----
ok "sink fixed: 200 for everything" sink_ctl "$SP" '{"mode":"200"}'
ctl dlq replay dlq.poison --all >"$T/replay.out" 2>&1
rc=$?
diag "replay: $(cat "$T/replay.out")"
ok "esbctl dlq replay --all: exit 0" [ "$rc" = 0 ]
replayed() { [ "$(grep -c '"status":200' "$T/sink.log")" -ge 52 ]; }
ok "both replayed messages reach the sink" wait_for 100 replayed
sleep 1
sink_tsv "$T/sink.log" >"$T/sink.tsv"
ok200() { awk -F'\t' -v b="$1" '$4 == b && $2 == 200' "$T/sink.tsv" | wc -l; }
ok "poison-400 delivered exactly once by the replay (2 requests in all)" \
    eval '[ "$(ok200 poison-400)" = 1 ] && [ "$(attempts poison-400)" = 2 ]'
ok "poison-503 delivered exactly once by the replay (4 requests in all)" \
    eval '[ "$(ok200 poison-503)" = 1 ] && [ "$(attempts poison-503)" = 4 ]'
keys() { awk -F'\t' -v b="$1" '$4 == b { print $3 }' "$T/sink.tsv" | sort -u; }
ok "the replays carry the original Idempotency-Key (the message id)" \
    eval '[ "$(keys poison-400)" = "$(id_of poison-400)" ] && [ "$(keys poison-503)" = "$(id_of poison-503)" ]'
ok "dlq.poison is empty" wait_for 50 dlq_is 0
ctl dlq replay dlq.poison --all >"$T/replay2.out" 2>&1
diag "second replay: $(cat "$T/replay2.out")"
sleep 1
ok "a second replay sends nothing more" \
    eval '[ "$(grep -c . "$T/sink.log")" = "$(wc -l <"$T/sink.tsv")" ] && [ "$(wc -l <"$T/sink.tsv")" = 56 ]'
ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

#!/usr/bin/env bash
# <dedupe max-keys="N"> (issue 5: `<dedupe key=... window=... max-keys=...>`)
# on a real esbd: the route remembers the 3 most recent keys; a 4th
# distinct key makes it forget the oldest, so a repeat of the oldest is
# processed again while a repeat of the newest is still dropped. The same
# holds after esbd is killed (SIGKILL) and restarted: it remembers exactly
# the keys it remembered before. Forgetting is counted (metric
# esb_bus_marks_forgotten_total) and logged once in a while, not per
# message: a burst of 8 new keys adds no log line. Each message the route
# processes becomes a file named by its message id; a duplicate is logged
# as dropped.
. "$(dirname "$0")/lib.sh"
esb_setup
APORT=$(pick_free_port)
mkdir -p "$T/out"
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always"/>
  <admin listen="127.0.0.1:$APORT" token-file="@T@/admin.token"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-out id="out" dir="@T@/out" name="{id}"/>
  </connectors>
  <route id="d" from="http-in:web" path="/d">
    <dedupe key="{header:idempotency-key}" window="1h" max-keys="3"/>
    <to uri="file-out:out"/>
  </route>
</esb>
XML
ok "esbctl check accepts max-keys" "$ESBCTL" check "$T/esb.xml"
esbd_start

# send KEY: POST a message with Idempotency-Key KEY, wait until the route
# processed it (its file appeared) or dropped it as a duplicate; prints
# "processed" or "dropped" (or "lost").
n=0
send() {
    n=$((n + 1))
    local id
    [ "$(post_h /d "msg-$n" text/plain -H "Idempotency-Key: $1")" = 202 ] || { echo "refused"; return; }
    id=$(header_of esb-message-id)
    for _ in $(seq 1 100); do
        [ -e "$T/out/$id" ] && { echo processed; return; }
        log_has "duplicate dropped id=$id" && { echo dropped; return; }
        sleep 0.05
    done
    echo lost
}
is() { # is KEY processed|dropped
    local got
    got=$(send "$1")
    [ "$got" = "$2" ] || { diag "$1: $got, expected $2"; return 1; }
}
forgot_lines() { grep -c "marks dedupe:d are bounded to the 3 most recent keys: [0-9]* older keys forgotten" "$T/esbd.log"; }
metric() {
    curl -s --max-time 5 -H "Authorization: Bearer $(tr -d ' \n' <"$T/admin.token")" \
        "http://127.0.0.1:$APORT/v1/metrics" | awk '$1 == "esb_bus_marks_forgotten_total" { print $2 }'
}

ok "k1, k2, k3: each processed" eval 'is k1 processed && is k2 processed && is k3 processed'
ok "k1 again: dropped (3 keys remembered)" is k1 dropped
ok "k4, a 4th distinct key: processed" is k4 processed
ok "k1 again: processed: the oldest key was forgotten" is k1 processed
ok "k4 again: dropped: the newest is still remembered" is k4 dropped
ok "k3 again: dropped (k1 made the route forget k2, not k3)" is k3 dropped
ok "k2 again: processed (forgotten)" is k2 processed
# remembered now: k4, k1, k2 (k3 forgotten by k2)
ok "the metric counts 3 forgotten keys ($(metric))" wait_for 20 eval '[ "$(metric)" = 3 ]'
ok "forgetting is logged" wait_for 30 eval '[ "$(forgot_lines)" -ge 1 ]'
grep "marks dedupe:d" "$T/esbd.log" | sed 's/^/# /'

ok "esbd killed (SIGKILL) and restarted" eval 'esbd_kill && esbd_start'
ok "after the restart: k4, k1, k2 still dropped" eval 'is k4 dropped && is k1 dropped && is k2 dropped'
ok "k3, forgotten before the restart: processed" is k3 processed
ok "k4, now the oldest, was forgotten by k3: processed" is k4 processed
for i in $(seq 5 12); do
    [ "$(send "k$i")" = processed ] || diag "k$i not processed"
done
ok "a burst of 8 new keys (k5..k12): each processed, the oldest forgotten each time" \
    eval 'is k12 dropped && is k11 dropped && is k10 dropped && is k9 processed'
ok "the metric counts 11 keys forgotten since the restart: k4, k1, then one per new key ($(metric))" \
    wait_for 20 eval '[ "$(metric)" = 11 ]'
sleep 1.5 # a maintenance pass or two: a per-message log line would show now
grep "marks dedupe:d" "$T/esbd.log" | sed 's/^/# /'
ok "logged once in a while, not per message: one line per esbd run for 14 forgotten keys ($(forgot_lines))" \
    [ "$(forgot_lines)" = 2 ]
ok "clean stop" esbd_stop
done_testing

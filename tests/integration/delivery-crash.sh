#!/usr/bin/env bash
# Crashes while delivering over HTTP (issue 5, "Must show" #4), against a
# real HTTP server (tests/tools/http-sink) that keeps running:
#   a. Four clients POST numbered bodies (each retried until answered 202)
#      while esbd, delivering them to the sink, is killed with SIGKILL
#      ESB_IT_KILLS times (default 10), each time while the sink has a
#      request of esbd open, and restarted on the same bus. Every body
#      answered 202 reaches the sink (zero lost); duplicates (at-least-once)
#      are counted and reported.
#   b. 1500 messages are dead-lettered (the sink answers 400), the sink is
#      fixed, and `esbctl dlq replay --all` is interrupted by SIGKILL
#      ESB_IT_KILLS times, each while the replay runs. After a last replay,
#      every dead-lettered body reaches the sink (zero lost), the DLQ is
#      empty; duplicates are counted and reported.
# (The receiving side with <dedupe> - zero duplicates processed - is not
# part of this script yet.)
. "$(dirname "$0")/lib.sh"
esb_setup_bg
KILLS=${ESB_IT_KILLS:-10}
M=${ESB_IT_DLQ_MESSAGES:-1500}
sink_start sink
SP=$SINK_PORT
APORT=$(pick_free_port)
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always" disk-low-water="0"/>
  <workers count="2"/>
  <admin listen="127.0.0.1:$APORT" token-file="@T@/admin.token"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" threads="4"/>
    <http-out id="sink" url="http://127.0.0.1:$SP/c/{id}" max-in-flight="16"/>
    <http-out id="dsink" url="http://127.0.0.1:$SP/d/{id}" max-in-flight="16"/>
  </connectors>
  <route id="c" from="http-in:web" path="/c">
    <to uri="http-out:sink"/>
    <retry max-attempts="1000" initial-delay="100ms" max-delay="500ms" jitter="0"/>
  </route>
  <route id="d" from="http-in:web" path="/d">
    <to uri="http-out:dsink"/>
    <retry max-attempts="1000" initial-delay="100ms" max-delay="500ms" jitter="0"/>
  </route>
</esb>
XML
ctl() { "$ESBCTL" --config "$T/esb.xml" "$@"; }

# ---- a. SIGKILL during deliveries ----
# Each answer takes 20 ms, so deliveries are open at the sink most of the time.
ok "sink: 200 after 20 ms" sink_ctl "$SP" '{"mode":"200","delay_ms":20}'
esbd_start_tracked
for c in c1 c2 c3 c4; do bg_start load_client "$c" /c 1 1000000; done
kills=0
open_at_kill=0
sink_busy() { sink_stats "$SP" && [ "$(stat_of in_flight)" -gt 0 ]; }
for k in $(seq 1 "$KILLS"); do
    sleep "0.$((RANDOM % 6 + 2))"
    wait_for 20 sink_busy && esbd_alive && open_at_kill=$((open_at_kill + 1))
    esbd_kill
    kills=$((kills + 1))
    esbd_start_tracked
done
sleep 0.5
bg_stop_all
cat "$T"/acked.c* | sort >"$T/acked"
nacked=$(wc -l <"$T/acked")
diag "$kills SIGKILLs during deliveries; $nacked bodies answered 202"
ok "esbd was killed $kills times (>= 10), each with a delivery open at the sink" \
    eval '[ "$kills" -ge 10 ] && [ "$open_at_kill" = "$kills" ]'
ok "it restarted on the same bus every time" [ "$(grep -c 'esbd ready' "$T/esbd.log")" = $((kills + 1)) ]
ok "recovery never found a corrupt record" not log_has "esbd ready.* corrupt=[1-9]"
ok "the load was real (>= 200 bodies answered 202)" [ "$nacked" -ge 200 ]
ok "no client gave up on a body" [ -z "$(cat "$T"/gaveup.* 2>/dev/null)" ]

c_got() { # the bodies the sink received under /c (answered 200), sorted
    sed -n 's|.*"path":"/c/[^"]*".*"status":200,.*"body":"\(c[1-4]-[0-9]*\)"}$|\1|p' "$T/sink.log" | sort
}
all_c() { c_got >"$T/c-got" && [ -z "$(missing_lines "$T/acked" "$T/c-got")" ]; }
wait_for 300 all_c
missing=$(missing_lines "$T/acked" "$T/c-got" | wc -l)
dups=$(dup_count "$T/c-got")
extra=$(missing_lines "$T/c-got" "$T/acked" | wc -l)
ok "zero lost: every body answered 202 reached the sink ($missing missing)" [ "$missing" = 0 ]
diag "duplicates at the sink (at-least-once; a delivery cut by a kill is sent again): $dups"
diag "bodies delivered whose 202 never reached the client (accepted as esbd died): $extra"
# PATH-ID KEY BODY of every request under /c
sed -n 's|.*"path":"/c/\([^"]*\)".*"idempotency_key":"\([^"]*\)".*"body":"\(c[1-4]-[0-9]*\)"}$|\1 \2 \3|p' \
    "$T/sink.log" >"$T/c-keys"
ok "every request to /c/{id} carried Idempotency-Key = that id" \
    eval '[ -s "$T/c-keys" ] && [ -z "$(awk '"'"'$1 != $2'"'"' "$T/c-keys")" ]'
# A duplicate is either the same message sent again (same key: a delivery
# cut by a kill) or a body accepted twice (two keys: its first 202 was lost
# in a crash and the client sent it again).
resent=$(awk '{ print $3, $2 }' "$T/c-keys" | sort | uniq -d | wc -l)
twice=$(awk '{ print $3, $2 }' "$T/c-keys" | sort -u | cut -d' ' -f1 | uniq -d | wc -l)
diag "of those: $resent messages sent again under the same Idempotency-Key, $twice bodies accepted twice (two message ids)"

# ---- b. SIGKILL during a DLQ replay ----
ok "sink: 400 for the dl- bodies" sink_ctl "$SP" '{"mode":"400","match":"dl-","body":"not today"}'
post_many /d dl 1 "$M" 16
n202=$(awk '$1 == 202' "$T/posted.dl" | wc -l)
ok "$M bodies answered 202" [ "$n202" = "$M" ]
dlq_n() { ctl queues 2>/dev/null | awk '$1 == "dlq.d" { print $2 }'; }
dlq_is() { [ "$(dlq_n)" = "$1" ]; }
ok "all $M dead-lettered to dlq.d after 1 attempt each" wait_for 300 dlq_is "$M"
ok "sink fixed: 200 for everything" sink_ctl "$SP" '{"mode":"200"}'
replays_logged() { grep -c 'dlq replay queue=dlq.d' "$T/esbd.log"; }
# replay_past N: more than N replays logged
replay_past() { [ "$(replays_logged)" -gt "$1" ]; }
rkills=0
during=0
left=$M
for k in $(seq 1 "$KILLS"); do
    before=$(replays_logged)
    ctl dlq replay dlq.d --all >"$T/replay-$k.out" 2>&1 &
    rpid=$!
    # Let it replay 1..30 entries (watching closely), then kill esbd under it.
    target=$((before + 1 + RANDOM % 30))
    for _ in $(seq 1 1000); do
        replay_past "$target" && break
        kill -0 "$rpid" 2>/dev/null || break
        sleep 0.002
    done
    kill -0 "$rpid" 2>/dev/null && esbd_alive && during=$((during + 1))
    esbd_kill
    rkills=$((rkills + 1))
    wait "$rpid"
    esbd_start_tracked
    left=$(dlq_n)
    diag "kill $k: $(($(replays_logged) - before)) replays logged in this round, $left left in dlq.d"
done
ok "esbd was killed $rkills times (>= 10) while esbctl dlq replay ran" \
    eval '[ "$rkills" -ge 10 ] && [ "$during" = "$rkills" ]'
ok "the DLQ was only partly replayed by then ($left of $M left)" \
    eval '[ "${left:-0}" -gt 0 ] && [ "${left:-0}" -lt "$M" ]'
ctl dlq replay dlq.d --all >"$T/replay-last.out" 2>&1
ok "a last replay --all succeeds ($(cat "$T/replay-last.out"))" [ $? = 0 ]
ok "dlq.d is empty" wait_for 100 dlq_is 0
awk '$1 == 202 { print $3 }' "$T/posted.dl" | sort >"$T/dl-acked"
d_got() {
    sed -n 's|.*"path":"/d/[^"]*".*"status":200,.*"body":"\(dl-[0-9]*\)"}$|\1|p' "$T/sink.log" | sort
}
all_d() { d_got >"$T/d-got" && [ -z "$(missing_lines "$T/dl-acked" "$T/d-got")" ]; }
wait_for 300 all_d
sleep 0.5
d_got >"$T/d-got"
missing=$(missing_lines "$T/dl-acked" "$T/d-got" | wc -l)
ddups=$(dup_count "$T/d-got")
ok "zero lost: every dead-lettered body reached the sink after the replays ($missing missing)" \
    [ "$missing" = 0 ]
diag "duplicates at the sink after interrupted replays: $ddups"
ok "recovery never found a corrupt record" not log_has "esbd ready.* corrupt=[1-9]"
ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

#!/usr/bin/env bash
# Crash test over HTTP: four clients POST numbered bodies (each retried
# until answered 202, like a real client) while esbd is killed with SIGKILL
# at random moments (ESB_IT_KILLS times, default 12) and restarted on the
# same bus. At the end every body answered 202 must be in the output
# directory (zero lost). Duplicates (a body accepted twice because its 202
# was lost in a crash and the client retried) are allowed, counted and
# reported.
. "$(dirname "$0")/lib.sh"
esb_setup_bg
KILLS=${ESB_IT_KILLS:-12}
mkdir -p "$T/out"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always" disk-low-water="0"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" threads="4"/>
    <file-out id="out" dir="@T@/out" name="{id}"/>
  </connectors>
  <route id="r" from="http-in:web" path="/in">
    <to uri="file-out:out"/>
    <retry max-attempts="100" initial-delay="50ms" max-delay="500ms"/>
  </route>
</esb>
XML
esbd_start_tracked
for c in c1 c2 c3 c4; do bg_start load_client "$c" /in 1 1000000; done

kills=0
alive_at_kill=0
for k in $(seq 1 "$KILLS"); do
    sleep "0.$((RANDOM % 7 + 2))"
    esbd_alive && alive_at_kill=$((alive_at_kill + 1))
    esbd_kill
    kills=$((kills + 1))
    esbd_start_tracked
done
sleep 0.5
bg_stop_all
acked_all=$(cat "$T"/acked.c* | sort)
printf '%s\n' "$acked_all" >"$T/acked"
nacked=$(wc -l <"$T/acked")
diag "$kills SIGKILLs; $nacked bodies answered 202"
ok "esbd was killed $kills times while running (>= 10)" eval '[ "$kills" -ge 10 ] && [ "$alive_at_kill" = "$kills" ]'
ok "it restarted on the same bus every time" [ "$(grep -c 'esbd ready' "$T/esbd.log")" = $((kills + 1)) ]
ok "recovery never found a corrupt record" not log_has "esbd ready.* corrupt=[1-9]"
ok "the load was real (>= 200 bodies answered 202)" [ "$nacked" -ge 200 ]
ok "no client gave up on a body" [ -z "$(cat "$T"/gaveup.* 2>/dev/null)" ]
ok "no body answered 202 twice by the clients" [ -z "$(uniq -d "$T/acked")" ]

# Drain: everything answered 202 must reach the output.
all_out() { dir_bodies "$T/out" >"$T/out-bodies" && [ -z "$(missing_lines "$T/acked" "$T/out-bodies")" ]; }
wait_for 300 all_out
missing=$(missing_lines "$T/acked" "$T/out-bodies" | wc -l)
dups=$(dup_count "$T/out-bodies")
extra=$(missing_lines "$T/out-bodies" "$T/acked" | wc -l)
ok "zero lost: every body answered 202 is in the output ($missing missing)" [ "$missing" = 0 ]
diag "duplicates in the output (at-least-once): $dups"
diag "bodies delivered whose 202 never reached the client (accepted as the process died): $extra"
ok "every output file is one whole body" [ -z "$(grep -L -E '^c[1-4]-[0-9]+$' "$T"/out/* 2>/dev/null)" ]
ok "clean stop after the load" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
tmps=$(find "$T/out" -name '.tmp-*' | wc -l)
diag "temp files left in the output dir by killed deliveries: $tmps"
done_testing

#!/usr/bin/env bash
# The bus directory removed under a running esbd: appends would still
# succeed into the unlinked segment file and be acknowledged, yet no restart
# would find them. esbd notices within a maintenance period (1 s), stops
# acknowledging, logs why and exits with 70 (fatal bus error).
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/out"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-out id="out" dir="@T@/out"/>
  </connectors>
  <route id="r" from="http-in:web" path="/in">
    <to uri="file-out:out"/>
  </route>
</esb>
XML
esbd_start
ok "a message is accepted" [ "$(post /in before)" = 202 ]
ok "...and delivered" wait_for 50 dir_has "$T/out" before

rm -rf "$T/bus"
pid=$ESBD_PID
exited() { ! kill -0 "$pid" 2>/dev/null; }
ok "esbd stops by itself within 5 s of its bus directory being removed" wait_for 100 exited
wait "$pid" 2>/dev/null
rc=$?
ESBD_PID=
ok "...with exit status 70 (fatal bus error), got $rc" [ "$rc" = 70 ]
ok "...saying the log segment was removed" \
    log_has "bus FATAL the active log segment was removed from the bus directory in $T/bus"
ok "nothing is accepted any more" [ "$(post /in after)" != 202 ]
done_testing

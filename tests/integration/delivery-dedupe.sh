#!/usr/bin/env bash
# Idempotent consumer end to end (issue 5, "Must show" #4, second half): a
# SENDER esbd delivers to a RECEIVER esbd over http-out (Idempotency-Key =
# message id); the receiver's route has <dedupe key="{header:idempotency-key}">
# and writes each message it processes to a file. The sender is killed with
# SIGKILL 10 times during deliveries, so some messages may reach the
# receiver twice; then 20 of them are sent to the receiver again directly
# with their original Idempotency-Key (a client retrying). Zero of them are
# processed twice, none is lost. Outputs are named by the key (the sender's
# message id), so a second processing would show as a "-1" file.
. "$(dirname "$0")/lib.sh"
esb_setup
RPORT=$(pick_free_port)
mkdir -p "$T/recv" "$T/out"
cat >"$T/recv/esb.xml" <<XML
<esb xmlns="urn:esb:config:1">
  <bus dir="$T/recv/bus"/>
  <connectors>
    <http-in id="in" listen="127.0.0.1:$RPORT"/>
    <file-out id="out" dir="$T/out" name="{header:idempotency-key}"/>
  </connectors>
  <route id="recv" from="http-in:in" path="/in">
    <dedupe key="{header:idempotency-key}" window="1h"/>
    <to uri="file-out:out"/>
  </route>
</esb>
XML
"$ESBD" "$T/recv/esb.xml" >"$T/recv.log" 2>&1 &
RPID=$!
wait_for 100 grep -q "esbd ready" "$T/recv.log" || bail "receiver did not start"
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <bus dir="@T@/bus"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <http-out id="recv" url="http://127.0.0.1:$RPORT/in" max-in-flight="16"/>
  </connectors>
  <route id="s" from="http-in:web" path="/s">
    <to uri="http-out:recv"/>
    <retry max-attempts="50" initial-delay="100ms" multiplier="2" max-delay="1s" jitter="0"/>
  </route>
</esb>
XML
esbd_start
: >"$T/accepted"
n=0
for kill in $(seq 1 10); do
    for i in $(seq 1 30); do
        n=$((n + 1))
        [ "$(post_h /s "msg-$n")" = 202 ] && echo "msg-$n" >>"$T/accepted"
    done
    sleep "0.0$((RANDOM % 9 + 1))"
    esbd_kill
    esbd_start
done
accepted=$(wc -l <"$T/accepted")
bodies() { for f in "$T"/out/*; do [ -f "$f" ] && { cat "$f"; echo; }; done; }
all_in() { [ "$(bodies | sort -u | wc -l)" -ge "$accepted" ]; }
ok "every accepted message ($accepted) reached the receiver's output" wait_for 300 all_in
ok "nothing is missing" [ -z "$(bodies | sort -u | comm -23 <(sort -u "$T/accepted") -)" ]
files=$(ls "$T/out" | wc -l)
distinct=$(bodies | sort -u | wc -l)
kill_dups=$(grep -c "duplicate dropped" "$T/recv.log")
diag "sender killed 10 times; receiver dropped $kill_dups duplicate deliveries"
resent=0
for f in $(ls "$T/out" | head -20); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Idempotency-Key: $f" --data-binary @"$T/out/$f" \
        "http://127.0.0.1:$RPORT/in")
    [ "$code" = 202 ] && resent=$((resent + 1))
done
ok "20 messages sent again to the receiver with their keys: accepted" [ "$resent" = 20 ]
dropped() { [ "$(grep -c "duplicate dropped" "$T/recv.log")" -ge $((kill_dups + 20)) ]; }
ok "... and all 20 dropped as duplicates" wait_for 100 dropped
ok "zero duplicates processed: $files output files for $distinct distinct messages" [ "$files" = "$distinct" ]
ok "no second copy (-1 file) was written" [ -z "$(ls "$T/out" | grep -- '-1$')" ]
ok "the sender stops cleanly" esbd_stop
kill -TERM "$RPID"
wait "$RPID"
ok "the receiver stops cleanly" [ $? = 0 ]
done_testing

#!/usr/bin/env bash
# Back-pressure with a real esbd: when the bus refuses input, http-in answers
# 503 with Retry-After and stores nothing, and file-in leaves the file alone
# (not in done-dir, not in error-dir); once the pressure is gone input is
# accepted again and everything answered 202 is delivered.
#   1. a disk low-water mark above the free space (1000TB): every POST is
#      refused; a restart with a sane mark accepts again, and the waiting
#      file is taken then;
#   2. a queue limit (queue-max-entries) with deliveries held back by an
#      output directory that cannot be created (its parent is a file): the
#      queues fill, POSTs get 503; when the directory can be made the held
#      messages are delivered and POSTs are accepted again, without restart.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/in" "$T/out"

config() { # config LOW-WATER QUEUE-MAX OUT-DIR
    write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" disk-low-water="$1" queue-max-entries="$2"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-in id="drop" dir="@T@/in" stable-for="100ms" poll-interval="50ms"/>
    <file-out id="out" dir="$3"/>
    <file-out id="files" dir="@T@/fout" name="{header:esb-file-name}"/>
  </connectors>
  <route id="r" from="http-in:web" path="/in">
    <to uri="file-out:out"/>
    <retry max-attempts="1000" initial-delay="50ms" max-delay="200ms"/>
  </route>
  <route id="f" from="file-in:drop"><to uri="file-out:files"/></route>
</esb>
XML
}

# ---- 1. disk low-water mark above the free space ----
config 1000TB 0 "$T/out"
esbd_start
codes=
for i in 1 2 3 4 5; do
    codes="$codes $(post_h /in "full-$i")"
    ra=$(header_of retry-after)
    [ "$ra" = 1 ] || diag "full-$i: Retry-After '$ra'"
done
ok "every POST answered 503 under a full disk ($codes)" [ "$codes" = " 503 503 503 503 503" ]
ok "the 503 carries Retry-After: 1" [ "$(header_of retry-after)" = 1 ]
ok "the 503 body says why" grep -q 'bus full' "$T/last-body"
ok "no message id was given" not grep -q '"id"' "$T/last-body"
echo "dropped while full" >"$T/in/waiting.txt"
sleep 1
ok "file-in does not take a file it cannot store: still in the inbox or claimed" \
    test -e "$T/in/waiting.txt" -o -n "$(ls "$T/in/.esb-work" 2>/dev/null)"
ok "...and not in done-dir" not test -e "$T/in/done/waiting.txt"
ok "...and not in error-dir" not test -e "$T/in/failed/waiting.txt"
ok "back-pressure logged" log_has "back-pressure"
ok "nothing delivered while full" [ "$(count_files "$T/out")" = 0 ]
ok "esbd stops cleanly under back-pressure" esbd_stop

config 1MB 0 "$T/out"
esbd_start
ok "after a restart with a sane low-water mark a POST is accepted" [ "$(post_h /in after-restart)" = 202 ]
ok "...and delivered" wait_for 50 dir_has "$T/out" "after-restart"
ok "the waiting file is taken and delivered" wait_for 50 dir_has "$T/fout" "dropped while full"
ok "...and moved to done-dir" wait_for 30 test -f "$T/in/done/waiting.txt"
ok "no body answered 503 was ever delivered" not dir_has "$T/out" "full-"
ok "stop" esbd_stop

# ---- 2. queue limit with held deliveries ----
echo "not a directory" >"$T/blocker"
config 0 4 "$T/blocker/out"
esbd_start
: >"$T/q-202"
: >"$T/q-503"
bad_ra=0
for i in $(seq 1 30); do
    code=$(post_h /in "q-$i")
    case $code in
    202) echo "q-$i" >>"$T/q-202" ;;
    503)
        echo "q-$i" >>"$T/q-503"
        [ "$(header_of retry-after)" = 1 ] || bad_ra=$((bad_ra + 1))
        ;;
    *) diag "q-$i answered $code" ;;
    esac
done
n202=$(wc -l <"$T/q-202")
n503=$(wc -l <"$T/q-503")
diag "queue limit 4: $n202 accepted, $n503 refused of 30"
ok "some POSTs accepted before the queues filled" [ "$n202" -ge 1 ]
ok "accepted no more than the two queue limits allow (route input + delivery queue, 4 each)" [ "$n202" -le 8 ]
ok "the rest answered 503" eval '[ $((n202 + n503)) = 30 ] && [ "$n503" -ge 22 ]'
ok "every 503 carried Retry-After: 1" [ "$bad_ra" = 0 ]
ok "the 503 names the full queue" grep -q 'queue [^ ]* full' "$T/last-body"
ok "deliveries were held (retrying)" wait_for 30 log_has "delivery failed id=.*retry in"
ok "nothing delivered while held" not test -d "$T/blocker/out"

# The pressure goes away: the output directory can now be created.
rm "$T/blocker"
mkdir -p "$T/blocker"
ok "all accepted messages delivered once the output can be written" \
    wait_for 100 count_is "$T/blocker/out" "$n202"
dir_bodies "$T/blocker/out" >"$T/q-out"
ok "every body answered 202 is in the output" [ -z "$(missing_lines "$T/q-202" "$T/q-out")" ]
ok "no body answered 503 is in the output" [ -z "$(comm -12 <(sort "$T/q-503") "$T/q-out")" ]
ok "POSTs are accepted again without a restart" wait_for 30 post_is 202 /in after-drain
ok "...and delivered" wait_for 50 dir_has "$T/blocker/out" "after-drain"
ok "esbd still alive" esbd_alive
ok "stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

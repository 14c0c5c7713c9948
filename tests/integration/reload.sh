#!/usr/bin/env bash
# Reload (SIGHUP) with a real esbd.
#   a. A broken config (unknown attribute, XML not well-formed, a queue no
#      route consumes) is refused with FILE:LINE in the log, and the old
#      routes keep routing.
#   b. A valid config that sends the route's messages to another output
#      takes over while two clients POST 400 messages: every message
#      answered 202 is delivered exactly once (in out-a or out-b, never both,
#      never twice), none is lost, every message POSTed after the reload
#      took effect goes to out-b, and no request is refused.
#   c. A reload that renames the route (same path) while messages wait on
#      its input queue: the new route takes them over, none is stranded.
. "$(dirname "$0")/lib.sh"
esb_setup_bg
mkdir -p "$T/out-a" "$T/out-b"

# config TARGET [EXTRA-ATTRS-ON-LINE-8] : the route /in sends to file-out:TARGET.
config() {
    write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" threads="4"/>
    <file-out id="a" dir="@T@/out-a"/>
    <file-out id="b" dir="@T@/out-b" ${2:-}/>
  </connectors>
  <route id="r" from="http-in:web" path="/in"><to uri="file-out:$1"/></route>
</esb>
XML
}

# Send SIGHUP and wait until the log has one more line matching ERE.
hup_and_wait() {
    local re=$1 before
    before=$(grep -Ec -- "$re" "$T/esbd.log")
    kill -HUP "$ESBD_PID"
    wait_for 50 eval '[ "$(grep -Ec -- "$re" "$T/esbd.log")" -gt "$before" ]'
}

config a
esbd_start_tracked
ok "config A routes to out-a" routed /in before-reloads "$T/out-a"

# ---- a. broken configs ----
config b 'bogus="1"'
ok "unknown attribute: reload refused" hup_and_wait "running config stays in force"
ok "the log names FILE:8 (the line of the bad attribute)" log_has "esb\.xml:8:.*bogus"
ok "old routes still route: a POST goes to out-a" routed /in after-bad-attr "$T/out-a"
ok "...and not to out-b" not dir_has "$T/out-b" after-bad-attr

config b
sed -i '9s|</connectors>|</connectorz>|' "$T/esb.xml"
ok "XML not well-formed: reload refused" hup_and_wait "running config stays in force"
ok "the log names FILE:9" log_has "esb\.xml:9:"
ok "old routes still route" routed /in after-bad-xml "$T/out-a"

config b
sed -i '10s|<to uri="file-out:b"/>|<to uri="queue:nowhere"/>|' "$T/esb.xml"
ok "queue without a consumer: reload refused" hup_and_wait "running config stays in force"
ok "the log names FILE:10 and the queue" log_has "esb\.xml:10:.*nowhere"
ok "old routes still route" routed /in after-bad-queue "$T/out-a"
ok "no refused config ever reached out-b" [ "$(count_files "$T/out-b")" = 0 ]
ok "esbd alive after three bad reloads" esbd_alive

# ---- b. a valid reload under load ----
rm -f "$T"/out-a/*
# client NAME N: POST NAME-1..NAME-N; log "TAG CODE ID NAME-i" per request,
# TAG = post if $T/switched existed before the request was sent.
client() {
    local name=$1 n=$2 i tag port out
    port=$(<"$T/port")
    for i in $(seq 1 "$n"); do
        load_running || break
        tag=pre
        [ -e "$T/switched" ] && tag=post
        out=$(curl -s -o /dev/null -w '%{http_code} %header{esb-message-id}' --max-time 10 \
            -X POST -H 'Content-Type: text/plain' --data-binary "$name-$i" \
            "http://127.0.0.1:$port/in")
        echo "$tag $out $name-$i" >>"$T/log.$name"
    done
}
K=200
bg_start client c1 $K
bg_start client c2 $K
wait_for 100 eval '[ "$(cat "$T"/log.c* 2>/dev/null | wc -l)" -ge 120 ]'
config b
t0=$(date +%s%N)
ok "valid reload during the load" hup_and_wait "reloaded config="
touch "$T/switched"
diag "reload took effect after $((($(date +%s%N) - t0) / 1000000)) ms, $(cat "$T"/log.c* | wc -l) requests sent by then"
for p in "${_bg_pids[@]}"; do wait "$p"; done
_bg_pids=()
cat "$T"/log.c* >"$T/requests"
total=$(wc -l <"$T/requests")
awk '$2 == 202 { print $3 }' "$T/requests" | sort >"$T/ids-202"
n202=$(wc -l <"$T/ids-202")
npost=$(awk '$1 == "post" && $2 == 202' "$T/requests" | wc -l)
ok "all $((2 * K)) requests answered 202 across the reload (got $n202 of $total)" eval '[ "$total" = $((2 * K)) ] && [ "$n202" = "$total" ]'
ok "every 202 carried a message id" [ -z "$(awk '$2 == 202 && $3 == ""' "$T/requests")" ]
both() { [ $(($(count_files "$T/out-a") + $(count_files "$T/out-b"))) -ge "$n202" ]; }
wait_for 100 both
ls "$T/out-a" "$T/out-b" | grep -v '^$\|:$' | sort >"$T/ids-out"
na=$(count_files "$T/out-a")
nb=$(count_files "$T/out-b")
diag "delivered: $na to out-a, $nb to out-b; $npost sent after the reload took effect"
ok "the switch happened mid-load (both outputs used)" eval '[ "$na" -gt 0 ] && [ "$nb" -gt 0 ]'
ok "no message lost: every 202 id is delivered" [ -z "$(missing_lines "$T/ids-202" "$T/ids-out")" ]
ok "no duplicates: no id delivered twice or to both outputs" [ -z "$(uniq -d "$T/ids-out")" ]
ok "nothing delivered that was not answered 202" [ -z "$(missing_lines "$T/ids-out" "$T/ids-202")" ]
ok "no suffixed copies (-1) in either output" [ -z "$(ls "$T/out-a" "$T/out-b" | grep -- '-1$')" ]
awk '$1 == "post" && $2 == 202 { print $3 }' "$T/requests" | sort >"$T/ids-post"
ok "every message sent after the reload took effect went to out-b" \
    eval '[ -s "$T/ids-post" ] && [ -z "$(comm -12 "$T/ids-post" <(ls "$T/out-a" | sort))" ]'
ok "each file holds the body that was answered with its id" \
    eval 'awk '"'"'$2 == 202 { print $3, $4 }'"'"' "$T/requests" | while read -r id body; do
        f="$T/out-a/$id"; [ -f "$f" ] || f="$T/out-b/$id"
        [ "$(cat "$f")" = "$body" ] || { echo "# $id: $(cat "$f") != $body"; exit 1; }; done'
ok "esbd alive" esbd_alive
ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]

# ---- c. a reload that renames the route while messages wait on its input ----
# Route "ra" delivers to an output that cannot be written yet (its parent is
# a file) and queues hold at most 3 entries, so accepted messages wait both
# in the delivery queue and on ra's input queue. The reload replaces ra by
# "rb" on the same path, sending to out-c: what ra already routed is
# delivered by ra's output once it can be written; what still waited on ra's
# input is routed by rb. Each message answered 202 arrives exactly once.
config_c() {
    write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" queue-max-entries="3"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-out id="held" dir="@T@/blocker/out"/>
    <file-out id="c" dir="@T@/out-c"/>
  </connectors>
  <route id="$1" from="http-in:web" path="/in">
    <to uri="file-out:$2"/>
    <retry max-attempts="1000" initial-delay="50ms" max-delay="200ms"/>
  </route>
</esb>
XML
}
echo "not a directory" >"$T/blocker"
config_c ra held
esbd_start_tracked
: >"$T/c-202"
for i in $(seq 1 10); do
    [ "$(post /in "c-$i")" = 202 ] && echo "c-$i" >>"$T/c-202"
done
nc=$(wc -l <"$T/c-202")
ok "messages wait on ra's input queue (back-pressure from the held output)" \
    wait_for 50 log_has "back-pressure queue=route:ra"
diag "$nc of 10 accepted before the queues filled"
config_c rb c
ok "reload renaming ra to rb" hup_and_wait "reloaded config="
rm "$T/blocker"
mkdir -p "$T/blocker"
all_c() { [ $(($(count_files "$T/blocker/out") + $(count_files "$T/out-c"))) -ge "$nc" ]; }
wait_for 100 all_c
dir_bodies "$T/blocker/out" >"$T/c-held"
dir_bodies "$T/out-c" >"$T/c-rb"
sort -m "$T/c-held" "$T/c-rb" >"$T/c-out"
diag "delivered by ra's output: $(wc -l <"$T/c-held"), routed by rb: $(wc -l <"$T/c-rb")"
ok "no message stranded on the renamed route's queue: all $nc delivered" [ -z "$(missing_lines "$T/c-202" "$T/c-out")" ]
ok "each exactly once" eval '[ -z "$(uniq -d "$T/c-out")" ] && [ "$(wc -l <"$T/c-out")" = "$nc" ]'
ok "the waiting ones were routed by rb" [ -s "$T/c-rb" ]
ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left on route:ra or anywhere" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

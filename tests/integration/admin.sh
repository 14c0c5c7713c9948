#!/usr/bin/env bash
# The admin API and esbctl against a real esbd (docs/admin-api.md).
#   a. The token file is created (0600, 64 hex digits, never logged) when
#      missing; every request without the right bearer token gets 401.
#   b. Views: status, queues (esbctl and JSON), dlq list/show of messages
#      dead-lettered by an XPath route fed non-XML, filters and limits,
#      404/405, exit codes 2 and 3.
#   c. Changes: purge --id removes one; `esbctl reload` adds a route on
#      queue:fixed, replay --to queue:fixed delivers the message to a file
#      carrying esb-replays=1; two concurrent replays of one entry replay it
#      exactly once (5 rounds); replay to the origin dead-letters it again.
#   d. A broken config is refused by `esbctl reload` with FILE:LINE and the
#      old routes keep running; metrics; a restart keeps the token; a
#      non-loopback listen address is logged as a warning.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/out"

# A port nobody listens on (the admin API's; $PORT is http-in's).
APORT=$(pick_free_port)
ADMIN_HOST=127.0.0.1

# config [EXTRA-ROUTE-XML]
config() {
    write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <workers count="2"/>
  <admin listen="$ADMIN_HOST:$APORT" token-file="@T@/admin.token"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-out id="out" dir="@T@/out" name="{id}-r{header:esb-replays}"/>
  </connectors>
  <route id="xml" from="http-in:web" path="/xml">
    <choice>
      <when xpath="/order/total &gt; 1000"><to uri="file-out:out"/></when>
      <otherwise><to uri="file-out:out"/></otherwise>
    </choice>
  </route>
  ${1:-}
</esb>
XML
}

ctl() { "$ESBCTL" --config "$T/esb.xml" "$@"; }
# ctl_out NAME ARGS...: run esbctl, keep stdout/stderr in $T/NAME.{out,err}, exit code in $T/NAME.rc
ctl_out() {
    local name=$1
    shift
    ctl "$@" >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc_of() { cat "$T/$1.rc"; }
TOKEN() { tr -d ' \n' <"$T/admin.token"; }
# api METHOD PATH [BODY]: curl with the token; body in $T/api.body, prints the status
api() {
    local data=()
    [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
    curl -s -o "$T/api.body" -D "$T/api.headers" -w '%{http_code}' --max-time 20 -X "$1" \
        -H "Authorization: Bearer $(TOKEN)" "${data[@]}" "http://127.0.0.1:$APORT$2"
}
dlq_count() {
    ctl queues | awk '$1 == "dlq.xml" { print $2 }'
}
dlq_is() { [ "$(dlq_count)" = "$1" ]; }
# The seqs in dlq.xml, oldest first.
dlq_seqs() { ctl dlq list dlq.xml | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }'; }

# ---- a. token and authentication ----
config
ok "no token file before the start" not test -e "$T/admin.token"
esbd_start
ok "esbd created the token file" test -f "$T/admin.token"
ok "...with mode 0600" [ "$(stat -c %a "$T/admin.token")" = 600 ]
ok "...holding 64 hex digits (32 random bytes)" grep -Eqx '[0-9a-f]{64}' "$T/admin.token"
ok "the log names the token file" log_has "admin token created file=$T/admin.token"
ok "the log never shows the token" not grep -qF "$(TOKEN)" "$T/esbd.log"
ok "the admin API listens on the configured address" log_has "admin listening=127.0.0.1:$APORT"

code=$(curl -s -o /dev/null -D "$T/h401" -w '%{http_code}' "http://127.0.0.1:$APORT/v1/health")
ok "no token: 401" [ "$code" = 401 ]
ok "...with WWW-Authenticate: Bearer" grep -qi '^WWW-Authenticate: Bearer' "$T/h401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer 0123456789abcdef0123" \
    "http://127.0.0.1:$APORT/v1/health")
ok "wrong token: 401" [ "$code" = 401 ]
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Basic $(TOKEN)" \
    "http://127.0.0.1:$APORT/v1/queues")
ok "the right token in another scheme: 401" [ "$code" = 401 ]
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(TOKEN)x" \
    "http://127.0.0.1:$APORT/v1/health")
ok "the token with one more character: 401" [ "$code" = 401 ]
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer nope" \
    "http://127.0.0.1:$APORT/v1/reload")
ok "no reload without the token (401)" [ "$code" = 401 ]
ok "right token: 200 {\"status\":\"ok\"}" eval '[ "$(api GET /v1/health)" = 200 ] && grep -q "\"status\":\"ok\"" "$T/api.body"'

ctl_out status status
ok "esbctl status: exit 0, says ok" eval '[ "$(rc_of status)" = 0 ] && grep -q ": ok (esbd" "$T/status.out"'
echo "not-the-token-at-all-0000" >"$T/wrong.token"
ctl_out wrongtok --token-file "$T/wrong.token" status
ok "esbctl with a wrong token: exit 1" [ "$(rc_of wrongtok)" = 1 ]
ok "...'401: wrong token (token file F)'" grep -qF "401: wrong token (token file $T/wrong.token)" "$T/wrongtok.err"
"$ESBCTL" --admin "http://127.0.0.1:$(free_port)" --token-file "$T/admin.token" status \
    >/dev/null 2>"$T/unreach.err"
ok "esbctl against nothing: exit 1" [ $? = 1 ]
ok "...'cannot reach esbd admin API at URL'" grep -q "cannot reach esbd admin API at http://127.0.0.1:" "$T/unreach.err"
"$ESBCTL" status --admin "127.0.0.1:$APORT" --token-file "$T/admin.token" >/dev/null 2>&1
ok "--admin HOST:PORT and --token-file after the command work" [ $? = 0 ]

# ---- b. views ----
for b in "first not xml" "second, not xml either" "third: plain text"; do
    [ "$(post /xml "$b")" = 202 ] || diag "POST $b not accepted"
done
ok "three non-XML bodies dead-lettered to dlq.xml" wait_for 100 dlq_is 3
ctl_out queues queues
ok "esbctl queues: a table with INFLIGHT" grep -q '^QUEUE .*ENTRIES.*READY.*INFLIGHT.*WAITING.*BYTES' "$T/queues.out"
ok "esbctl queues: dlq.xml with 3 entries" awk '$1 == "dlq.xml" && $2 == 3 { f = 1 } END { exit !f }' "$T/queues.out"
ok "GET /v1/queues: JSON with every field" eval '[ "$(api GET /v1/queues)" = 200 ] &&
    grep -q "{\"name\":\"dlq.xml\",\"entries\":3,\"ready\":3,\"inflight\":0,\"waiting\":0,\"bytes\":[0-9]*}" "$T/api.body"'

ctl_out list dlq list dlq.xml
ok "dlq list: header SEQ ID ATTEMPTS AGE REASON" grep -q '^SEQ  *ID  *ATTEMPTS  *AGE  *REASON' "$T/list.out"
ok "dlq list: each tried once (ATTEMPTS 1)" [ "$(awk 'NR > 1 && $3 == 1' "$T/list.out" | wc -l)" = 3 ]
ok "dlq list: 3 entries" [ "$(awk 'NR > 1' "$T/list.out" | wc -l)" = 3 ]
ok "dlq list: each with its reason (not XML)" [ "$(grep -c 'not XML' "$T/list.out")" = 3 ]
mapfile -t SEQS < <(dlq_seqs)
ok "dlq list: seqs in order" eval '[ "${#SEQS[@]}" = 3 ] && [ "${SEQS[0]}" -lt "${SEQS[1]}" ] && [ "${SEQS[1]}" -lt "${SEQS[2]}" ]'
ctl_out lim dlq list dlq.xml --limit 1
ok "dlq list --limit 1: one entry, the oldest" eval '[ "$(awk "NR > 1" "$T/lim.out" | wc -l)" = 1 ] && grep -q "^${SEQS[0]} " "$T/lim.out"'
ctl_out flt dlq list dlq.xml --filter 'no such reason'
ok "dlq list --filter that matches nothing: no entries, exit 0" eval '[ "$(rc_of flt)" = 0 ] && grep -q "no entries match" "$T/flt.out"'
ctl_out flt2 dlq list dlq.xml --filter 'not XML'
ok "dlq list --filter 'not XML': all 3" [ "$(grep -c 'not XML' "$T/flt2.out")" = 3 ]
ok "GET entries?limit=2&filter=not%20XML: 2 entries, body excerpts" eval '[ "$(api GET "/v1/queues/dlq.xml/entries?limit=2&filter=not%20XML")" = 200 ] &&
    [ "$(grep -o "\"seq\":" "$T/api.body" | wc -l)" = 2 ] && grep -q "\"body\":\"first not xml\"" "$T/api.body"'
ok "queue names may be percent-encoded (dlq%2Exml)" eval '[ "$(api GET /v1/queues/dlq%2Exml/entries)" = 200 ] && grep -q "\"seq\":${SEQS[2]}" "$T/api.body"'

ctl_out show dlq show dlq.xml "${SEQS[1]}"
ok "dlq show: exit 0" [ "$(rc_of show)" = 0 ]
ok "dlq show: the reason" grep -q '^reason: .*not XML' "$T/show.out"
ok "dlq show: where it died (route:xml)" grep -q '^dead from: *route:xml' "$T/show.out"
ok "dlq show: 1 attempt, its history line of class route with the step's error" \
    eval 'grep -q "^attempts: *1$" "$T/show.out" &&
          grep -Eq "^ +1  [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z  route +step 1 .*not XML" "$T/show.out"'
ok "dlq show: the headers (esb-source: web)" grep -q '^  esb-source: web' "$T/show.out"
ok "dlq show: the whole body" grep -qx 'second, not xml either' "$T/show.out"
ok "GET entries/SEQ: whole body and dead_from" eval '[ "$(api GET "/v1/queues/dlq.xml/entries/${SEQS[1]}")" = 200 ] &&
    grep -q "\"dead_from\":\"route:xml\"" "$T/api.body" && grep -q "\"body\":\"second, not xml either\"" "$T/api.body"'
ctl_out show404 dlq show dlq.xml 999999
ok "dlq show of a missing entry: exit 3" [ "$(rc_of show404)" = 3 ]
ctl_out list404 dlq list dlq.nope
ok "dlq list of a missing queue: exit 3, names it" eval '[ "$(rc_of list404)" = 3 ] && grep -q "dlq.nope" "$T/list404.err"'
ctl_out usage1 dlq replay dlq.xml
ok "dlq replay without --id or --all: usage, exit 2" [ "$(rc_of usage1)" = 2 ]
ctl_out usage2 dlq purge dlq.xml --id 1 --all
ok "dlq purge with --id and --all: exit 2" [ "$(rc_of usage2)" = 2 ]
ok "unknown path: 404" [ "$(api GET /v1/nothing)" = 404 ]
ok "GET /v1/reload: 405 with Allow: POST" eval '[ "$(api GET /v1/reload)" = 405 ] && grep -qi "^Allow: POST" "$T/api.headers"'
ok "POST /v1/queues: 405" [ "$(api POST /v1/queues '{}')" = 405 ]
ok "replay with a malformed body: 400" [ "$(api POST /v1/queues/dlq.xml/replay '{"seq":1,"all":true}')" = 400 ]
ok "replay with an unknown field: 400" [ "$(api POST /v1/queues/dlq.xml/replay '{"sq":1}')" = 400 ]
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
ok "a body over 64 KiB: 413" [ "$(api POST /v1/queues/dlq.xml/purge "{\"all\":true,\"filter\":\"$big\"}")" = 413 ]

# ---- c. purge, reload, replay ----
ctl_out purge dlq purge dlq.xml --id "${SEQS[0]}"
ok "dlq purge --id: 'purged 1'" eval '[ "$(rc_of purge)" = 0 ] && grep -qx "purged 1" "$T/purge.out"'
ok "...dlq.xml has 2 entries left" dlq_is 2
ok "...the purged one is gone" not eval 'dlq_seqs | grep -qx "${SEQS[0]}"'
ctl_out purge2 dlq purge dlq.xml --id "${SEQS[0]}"
ok "purging it again: exit 3 (not found)" [ "$(rc_of purge2)" = 3 ]

config '<route id="fixed" from="queue:fixed"><to uri="file-out:out"/></route>'
ctl_out reload reload
ok "esbctl reload (a route on queue:fixed added): exit 0, 'reloaded'" eval '[ "$(rc_of reload)" = 0 ] && grep -qx reloaded "$T/reload.out"'
ok "esbd logged the reload" wait_for 50 log_has "reloaded config="
ID1=$(api GET "/v1/queues/dlq.xml/entries/${SEQS[1]}" >/dev/null; sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$T/api.body")
ctl_out typo dlq replay dlq.xml --id "${SEQS[1]}" --to queue:typo
ok "dlq replay --to a queue nothing consumes is refused (exit 1, says why)" eval '[ "$(rc_of typo)" = 1 ] && grep -q "nothing consumes queue:typo" "$T/typo.err" "$T/typo.out"'
ok "...and the entry stays in the DLQ" eval 'dlq_seqs | grep -qx "${SEQS[1]}"'
ctl_out replay dlq replay dlq.xml --id "${SEQS[1]}" --to queue:fixed
ok "dlq replay --id --to queue:fixed: 'replayed 1'" eval '[ "$(rc_of replay)" = 0 ] && grep -qx "replayed 1" "$T/replay.out"'
ok "...delivered to a file named ID-r1 (header esb-replays=1)" wait_for 50 test -f "$T/out/$ID1-r1"
ok "...holding the original body" [ "$(cat "$T/out/$ID1-r1" 2>/dev/null)" = "second, not xml either" ]
ok "...and it left the DLQ" dlq_is 1
ctl_out replay2 dlq replay dlq.xml --id "${SEQS[1]}"
ok "replaying it again: exit 3" [ "$(rc_of replay2)" = 3 ]

# Two concurrent replays of one entry, 5 times: each entry is replayed
# once (to its origin, route:xml, where it dies again as not XML).
for i in 1 2 3 4 5; do post /xml "race body $i" >/dev/null; done
ok "5 more dead letters" wait_for 100 dlq_is 6
mapfile -t RACE < <(dlq_seqs | tail -5)
wins=0 losses=0 odd=0
for s in "${RACE[@]}"; do
    ctl dlq replay dlq.xml --id "$s" >"$T/r1.out" 2>"$T/r1.err" &
    p1=$!
    ctl dlq replay dlq.xml --id "$s" >"$T/r2.out" 2>"$T/r2.err" &
    p2=$!
    wait $p1
    c1=$?
    wait $p2
    c2=$?
    for c in $c1 $c2; do
        case $c in 0) wins=$((wins + 1)) ;; 1 | 3) losses=$((losses + 1)) ;; *) odd=$((odd + 1)) ;; esac
    done
done
diag "concurrent replays: $wins won, $losses found it taken or gone"
ok "5 rounds of two concurrent replays: exactly 5 succeeded, 5 got 404/409" eval '[ "$wins" = 5 ] && [ "$losses" = 5 ] && [ "$odd" = 0 ]'
for s in "${RACE[@]}"; do
    [ "$(grep -c "dlq replay queue=dlq.xml seq=$s " "$T/esbd.log")" = 1 ] || diag "seq $s replayed $(grep -c "dlq replay queue=dlq.xml seq=$s " "$T/esbd.log") times"
done
ok "the log shows each raced entry replayed once" eval 'for s in "${RACE[@]}"; do [ "$(grep -c "dlq replay queue=dlq.xml seq=$s " "$T/esbd.log")" = 1 ] || exit 1; done'
ok "replayed to the origin, each died again: 1 old + 5 new entries" wait_for 100 dlq_is 6
ok "none of the raced seqs is still there" not eval 'dlq_seqs | grep -qxF -f <(printf "%s\n" "${RACE[@]}")'
ctl dlq list dlq.xml --json >/dev/null 2>&1
ok "--json goes with show only (exit 2)" [ $? = 2 ]
NEW=$(dlq_seqs | tail -1)
ok "a replayed entry carries esb-replays: 1" eval 'ctl dlq show dlq.xml "$NEW" | grep -q "^  esb-replays: 1"'
ctl_out purgeall dlq purge dlq.xml --all --filter 'not XML'
ok "dlq purge --all --filter: purged 6" eval 'grep -qx "purged 6" "$T/purgeall.out"'
ok "dlq.xml is empty" dlq_is 0

# ---- d. broken reload, metrics, restart ----
config '<route id="fixed" from="queue:fixed"><to uri="file-out:out" bogus="1"/></route>'
line=$(grep -n 'bogus=' "$T/esb.xml" | cut -d: -f1)
ctl_out badreload reload
ok "esbctl reload of a broken config: exit 1" [ "$(rc_of badreload)" = 1 ]
ok "...says it was refused" grep -q "reload refused; the running config stays in force" "$T/badreload.err"
ok "...with FILE:LINE of the error" grep -q "esb.xml:$line:.*bogus" "$T/badreload.err"
ok "POST /v1/reload: 400 {\"ok\":false,\"errors\":[...]}" eval '[ "$(api POST /v1/reload "{}")" = 400 ] && grep -q "\"ok\":false,\"errors\":\[\".*esb.xml:$line:" "$T/api.body"'
ok "esbd still running" esbd_alive
ok "the old routes still run (a dead letter arrives)" eval '[ "$(post /xml still-running)" = 202 ] && wait_for 100 dlq_is 1'

ok "GET /v1/metrics: 200" [ "$(api GET /v1/metrics)" = 200 ]
ok "metrics: esb_bus_commits_total with a value" grep -Eq '^esb_bus_commits_total [1-9][0-9]*$' "$T/api.body"
ok "metrics: TYPE lines" grep -q '^# TYPE esb_bus_syncs_total counter' "$T/api.body"
ok "metrics: esb_queue_entries{queue=\"dlq.xml\"} 1" grep -qx 'esb_queue_entries{queue="dlq.xml"} 1' "$T/api.body"
ok "metrics: inflight, waiting, bytes per queue" eval 'grep -q "^esb_queue_inflight{queue=" "$T/api.body" && grep -q "^esb_queue_waiting{queue=" "$T/api.body" && grep -q "^esb_queue_bytes{queue=" "$T/api.body"'
ok "metrics content type is Prometheus text" grep -qi '^Content-Type: text/plain; version=0.0.4' "$T/api.headers"

before=$(TOKEN)
ok "clean stop" esbd_stop
ADMIN_HOST=0.0.0.0
config
esbd_start
ok "restart: the token file is kept" [ "$(TOKEN)" = "$before" ]
ok "a non-loopback listen address is logged as a warning" log_has "warn admin listen=0.0.0.0:$APORT is not a loopback address"
ok "esbctl --config with listen 0.0.0.0 reaches it on 127.0.0.1" eval 'ctl status | grep -q "at http://127.0.0.1:$APORT: ok"'
ok "the dead letter survived the restart" dlq_is 1
ok "clean stop" esbd_stop

ADMIN_HOST=127.0.0.1
config
echo short >"$T/admin.token"
"$ESBD" "$T/esb.xml" >"$T/short.log" 2>&1
ok "a token shorter than 16 characters: esbd refuses to start (exit 1)" [ $? = 1 ]
ok "...and says why" grep -q "token is shorter than 16" "$T/short.log"
sed -i "s|listen=\"127.0.0.1:$APORT\"|listen=\"admin-host:$APORT\"|" "$T/esb.xml"
"$ESBCTL" check "$T/esb.xml" 2>"$T/check.err"
ok "esbctl check: a bad <admin listen> fails (exit 1)" [ $? = 1 ]
ok "...naming FILE:LINE, the element and the attribute" grep -q "esb.xml:5: element <admin>: attribute 'listen'" "$T/check.err"
done_testing

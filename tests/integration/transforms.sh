#!/usr/bin/env bash
# The shipped Lua transforms end to end: examples/transforms.xml in a real
# esbd, driven over HTTP (legacy XML and SOAP orders, fixed-width records,
# CloudEvents) and by a file drop (CSV exports); every output file is
# compared byte for byte with tests/data/transforms/*.expected.* (README
# there: the canonical encoder writes keys in a fixed order, so the
# comparison is exact once the run's message id and clock are templated as
# @ID@ and @NOW@). Also: the way back to legacy XML through topic:orders,
# CloudEvents binary and structured mode in http-in (400 for broken events,
# esb-ce-* headers seen by routes, forged esb-* headers dropped), and bad
# inputs dead-lettered with the script's reason while the next message is
# transformed.
. "$(dirname "$0")/lib.sh"
esb_setup
src=$(cd "$top_srcdir" && pwd)
D=$src/tests/data/transforms
cp "$src/examples/transforms.xml" "$T/esb.xml"
abs_esbd=$(cd "$(dirname "$ESBD")" && pwd)/$(basename "$ESBD")
abs_esbctl=$(cd "$(dirname "$ESBCTL")" && pwd)/$(basename "$ESBCTL")
ESBD=$abs_esbd
ESBCTL=$abs_esbctl
cd "$T" || bail "cd"
export ESB_TRANSFORMS_LISTEN="127.0.0.1:$PORT" ESB_LUA_DIR="$src/lua-scripts"
mkdir -p var/inbox/crm
start_ms=$(now_ms)
esbd_start

# templ ID: stdin lines with ID replaced by @ID@, and an event time that
# lies within this run (an RFC 3339 UTC time, to the second) by @NOW@.
templ() {
    local id=$1 line rest t ms
    while IFS= read -r line; do
        line=${line//$id/@ID@}
        rest=${line#*\"time\":\"}
        if [ "$rest" != "$line" ]; then
            t=${rest%%\"*}
            if [[ $t =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$ ]] &&
                ms=$(date -d "$t" +%s%3N 2>/dev/null) &&
                [ "$ms" -ge $((start_ms - 1000)) ] && [ "$ms" -le $(($(now_ms) + 1000)) ]; then
                line=${line/\"time\":\"$t\"/\"time\":\"@NOW@\"}
            fi
        fi
        printf '%s\n' "$line"
    done
}

# bodies FILE...: each file's bytes followed by a newline.
bodies() {
    local f
    for f in "$@"; do
        cat "$f"
        echo
    done
}

# same_as EXPECTED ID FILE...: the files' bodies, templated with ID and
# sorted by line, are byte for byte the expected file (also sorted: split
# parts are @ID@-1, @ID@-2, ...). On a difference, diff goes to the TAP log.
same_as() {
    local exp=$1 id=$2
    shift 2
    [ $# -gt 0 ] && [ -f "$1" ] || { diag "no output file for $exp"; return 1; }
    bodies "$@" | templ "$id" | LC_ALL=C sort >"$T/actual"
    LC_ALL=C sort "$D/$exp" >"$T/expected"
    cmp -s "$T/expected" "$T/actual" && return 0
    diff "$T/expected" "$T/actual" | sed 's/^/# /'
    return 1
}

# files_with DIR TEXT: the files in DIR that contain TEXT.
files_with() { grep -lF -- "$2" "$1"/* 2>/dev/null | LC_ALL=C sort; }
has_n_files() { [ "$(files_with "$1" "$2" | wc -l)" = "$3" ]; }

is_uuid() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]; }

# ---- legacy orders over HTTP -> canonical orders (and back to legacy XML) ----

declare -A order_id
for name in order-basic order-soap order-minimal; do
    ct=application/xml
    [ "$name" = order-soap ] && ct='text/xml; charset=utf-8'
    code=$(post_file /legacy/orders "$D/$name.xml" "$ct")
    order_id[$name]=$(last_id)
    ok "$name.xml accepted (202)" [ "$code" = 202 ]
done
for name in order-basic order-soap order-minimal; do
    id=${order_id[$name]}
    ok "$name: canonical order in var/out/orders/ID.json" \
        wait_for 50 test -s "var/out/orders/$id.json"
    ok "$name: byte for byte $name.expected.json (event id = message id $id)" \
        same_as "$name.expected.json" "$id" "var/out/orders/$id.json"
done
ok "order-basic: the way back to the ERP gives order-basic.event.expected.xml" \
    wait_for 50 same_as order-basic.event.expected.xml none "var/out/erp/${order_id[order-basic]}.xml"
ok "order-minimal: the way back without a customer name" \
    wait_for 50 same_as order-minimal.event.expected.xml none "var/out/erp/${order_id[order-minimal]}.xml"
ok "order-soap: the way back drops the SOAP envelope" \
    wait_for 50 grep -q '<PurchaseOrder xmlns="urn:acme:po:1" orderDate="2024-05-02T22:05:00Z" orderNumber="PO-2024-0043">' \
    "var/out/erp/${order_id[order-soap]}.xml"

# ---- fixed-width records over HTTP ----

code=$(post_file /mainframe/accounts "$D/account-active.txt" text/plain)
acct_one=$(last_id)
ok "account-active.txt accepted" [ "$code" = 202 ]
code=$(post_file /mainframe/accounts "$D/accounts-batch.txt" text/plain)
acct_batch=$(last_id)
ok "accounts-batch.txt accepted" [ "$code" = 202 ]
ok "one record: one canonical event" wait_for 50 has_n_files var/out/accounts "\"id\":\"$acct_one\"" 1
ok "account-active: byte for byte account-active.expected.json" \
    same_as account-active.expected.json "$acct_one" $(files_with var/out/accounts "\"id\":\"$acct_one\"")
ok "three records: a split into three events" \
    wait_for 50 has_n_files var/out/accounts "\"correlationid\":\"$acct_batch\"" 3
ok "accounts-batch: byte for byte accounts-batch.expected.json" \
    same_as accounts-batch.expected.json "$acct_batch" \
    $(files_with var/out/accounts "\"correlationid\":\"$acct_batch\"")

# ---- CSV exports dropped as files ----

cp "$D/customer-row.csv" var/inbox/crm/.customer-row.tmp
mv var/inbox/crm/.customer-row.tmp var/inbox/crm/customer-row.csv
cp "$D/customer-export.csv" var/inbox/crm/.customer-export.tmp
mv var/inbox/crm/.customer-export.tmp var/inbox/crm/customer-export.csv
file_id() { sed -n "s/.*file-in=crm file=$1 accepted id=\([0-9a-f-]*\).*/\1/p" esbd.log | head -1; }
ok "both files picked up (done-dir)" wait_for 100 test -f var/done/crm/customer-export.csv -a \
    -f var/done/crm/customer-row.csv
csv_one=$(file_id customer-row.csv)
csv_many=$(file_id customer-export.csv)
ok "their message ids are logged" eval 'is_uuid "$csv_one" && is_uuid "$csv_many"'
ok "one row: one canonical record" wait_for 50 has_n_files var/out/customers "\"id\":\"$csv_one\"" 1
ok "customer-row: byte for byte customer-row.expected.json" \
    same_as customer-row.expected.json "$csv_one" $(files_with var/out/customers "\"id\":\"$csv_one\"")
ok "header + two rows: two records" \
    wait_for 50 has_n_files var/out/customers "\"correlationid\":\"$csv_many\"" 2
ok "customer-export (quoted comma, doubled quotes, empty fields): byte for byte" \
    same_as customer-export.expected.json "$csv_many" \
    $(files_with var/out/customers "\"correlationid\":\"$csv_many\"")

# ---- CloudEvents in http-in ----

code=$(post_file /events "$D/order-basic.event.json" application/cloudevents+json)
ev_id=$(last_id)
ok "structured canonical order accepted" [ "$code" = 202 ]
ok "... archived unchanged (the body is kept as it is)" \
    wait_for 50 cmp -s "$D/order-basic.event.json" "var/out/orders/$ev_id.json"
ok "... and sent to the ERP as legacy XML (order-basic.event.expected.xml)" \
    wait_for 50 same_as order-basic.event.expected.xml none "var/out/erp/$ev_id.xml"

other='{"specversion":"1.0","id":"ev-7","source":"/crm","type":"com.acme.other","data":{"n":1}}'
code=$(post /events "$other" 'Application/CloudEvents+JSON; charset=utf-8')
id=$(last_id)
ok "structured event of another type accepted" [ "$code" = 202 ]
ok "... seen by the route as esb-ce-mode=structured, esb-ce-id=ev-7" \
    wait_for 50 test -f "var/out/events/structured-ev-7-$id.json"
ok "... body unchanged" eval '[ "$(cat "var/out/events/structured-ev-7-$id.json")" = "$other" ]'

ce_bad() { # ce_bad NAME BODY WANT-IN-ERROR [curl args...]
    local name=$1 body=$2 want=$3
    shift 3
    code=$(post_h /events "$body" application/cloudevents+json "$@")
    ok "structured: $name is 400" [ "$code" = 400 ]
    ok "... with a JSON error naming it" grep -qF "{\"error\":\"cloudevents: $want" "$T/last-body"
}
ce_bad "not JSON" '{"specversion":"1.0",' "the body is not JSON"
ce_bad "an array" '[1]' "the body is not a JSON object"
ce_bad "specversion 0.3" '{"specversion":"0.3","id":"1","source":"/s","type":"t"}' \
    'specversion must be \"1.0\"'
ce_bad "no source" '{"specversion":"1.0","id":"1","type":"t"}' "source must be a non-empty string"
ce_bad "empty id" '{"specversion":"1.0","id":"","source":"/s","type":"t"}' \
    "id must be a non-empty string"
ce_bad "duplicate keys" '{"specversion":"1.0","id":"1","id":"2","source":"/s","type":"t"}' \
    "the body is not JSON"

code=$(post /events '{"n":2}' application/json -H 'ce-specversion: 1.0' -H 'ce-id: b-9' \
    -H 'ce-source: /sensors/7' -H 'ce-type: com.acme.reading' -H 'ce-time: 2024-05-01T12:00:00Z')
id=$(last_id)
ok "binary event accepted" [ "$code" = 202 ]
ok "... seen by the route as esb-ce-mode=binary, esb-ce-id=b-9" \
    wait_for 50 test -f "var/out/events/binary-b-9-$id.json"
ok "... body unchanged" eval '[ "$(cat "var/out/events/binary-b-9-$id.json")" = "{\"n\":2}" ]'
code=$(post /events x text/plain -H 'ce-specversion: 1.0' -H 'ce-id: b-1' -H 'ce-source: /s')
ok "binary without ce-type is 400" [ "$code" = 400 ]
ok "... naming it" grep -qF 'binary mode needs a non-empty ce-type header' "$T/last-body"
code=$(post /events x text/plain -H 'ce-specversion: 0.3' -H 'ce-id: b-1' -H 'ce-source: /s' \
    -H 'ce-type: t')
ok "binary with ce-specversion 0.3 is 400" [ "$code" = 400 ]
code=$(post /events plain text/plain -H 'esb-ce-mode: structured' -H 'esb-ce-id: forged')
id=$(last_id)
ok "a plain POST with forged esb-ce-* headers is accepted" [ "$code" = 202 ]
ok "... and the route does not see them" wait_for 50 test -f "var/out/events/--$id.json"
ok "no 400 left anything behind" eval '[ "$(count_files var/out/events)" = 3 ]'

# ---- bad inputs: dead-lettered with the script's reason, the next one is fine ----

sed 's/<Quantity>3</<Quantity>3x</' "$D/order-basic.xml" >bad-qty.xml
code=$(post_file /legacy/orders bad-qty.xml application/xml)
bad_qty=$(last_id)
ok "an order with a bad quantity is accepted (202) ..." [ "$code" = 202 ]
code=$(post /legacy/orders '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>ERP down</faultstring></soap:Fault></soap:Body></soap:Envelope>' text/xml)
ok "a SOAP Fault is accepted (202) ..." [ "$code" = 202 ]
code=$(post_file /legacy/orders "$D/order-basic.xml" application/xml)
next=$(last_id)
ok "the next good order is transformed" wait_for 50 same_as order-basic.expected.json "$next" \
    "var/out/orders/$next.json"
printf 'C-9,Only Two\r\n' >var/inbox/crm/short.csv
ok "a CSV row with too few fields is taken" wait_for 100 test -f var/done/crm/short.csv
ok "nothing came out of the bad ones" eval \
    '[ ! -e "var/out/orders/$bad_qty.json" ] && ! grep -rq "C-9" var/out/customers'
ok "esbd stops cleanly" esbd_stop
"$ESBCTL" browse dlq.legacy-orders --data var/bus >dlq-orders.json
"$ESBCTL" browse dlq.crm-customers --data var/bus >dlq-crm.json
ok "dead letter: the field and the bad value" \
    grep -qF "legacy_order_xml: field 'Line[2]/Quantity': '3x' is not an integer" dlq-orders.json
ok "dead letter: the message id of the bad order" grep -qF "\"id\":\"$bad_qty\"" dlq-orders.json
ok "dead letter: the SOAP fault" grep -qF "legacy_order_xml: SOAP Fault soap:Server: ERP down" \
    dlq-orders.json
ok "dead letter: the script's traceback" grep -qF "stack traceback" dlq-orders.json
ok "dead letter: the CSV row" grep -qF "csv_row: row 1: expected 6 fields, got 2" dlq-crm.json
done_testing

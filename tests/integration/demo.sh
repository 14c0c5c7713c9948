#!/usr/bin/env bash
# The README's walk through the demo, run for real: examples/demo.xml in a
# scratch working directory (its paths are relative: var/...), driven by the
# same curl commands the README shows.
. "$(dirname "$0")/lib.sh"
esb_setup
cp "$top_srcdir/examples/demo.xml" "$T/esb.xml"
abs_esbd=$(cd "$(dirname "$ESBD")" && pwd)/$(basename "$ESBD")
abs_esbctl=$(cd "$(dirname "$ESBCTL")" && pwd)/$(basename "$ESBCTL")
cd "$T" || bail "cd"
export ESB_DEMO_LISTEN="127.0.0.1:$PORT"
APORT=$(pick_free_port)
export ESB_DEMO_ADMIN="127.0.0.1:$APORT"
ESBD=$abs_esbd
esbd_start

ok "esbd --check accepts the demo" sh -c "'$abs_esbd' --check esb.xml >/dev/null"
id=$(curl -sS -H 'content-type: application/json' \
    -d '{"region":"EU","total":1200}' "http://127.0.0.1:$PORT/orders" |
    sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
ok "JSON order accepted with an id" [ -n "$id" ]
ok "routed by region into var/out/eu as ID.json" wait_for 50 test -f "var/out/eu/$id.json"
ok "its content is the order" grep -q '"region":"EU"' "var/out/eu/$id.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/xml' \
    -d '<order><id>7</id><total>2500</total></order>' "http://127.0.0.1:$PORT/legacy/orders")
ok "XML order accepted" [ "$code" = 202 ]
ok "routed by XPath into var/out/big" wait_for 50 dir_has var/out/big "<total>2500</total>"
mkdir -p var/inbox
echo 'id,total' >var/inbox/export.csv
ok "dropped file copied to var/out/files" wait_for 80 dir_has var/out/files "id,total"
ok "and moved to var/done" wait_for 30 test -f var/done/export.csv
ok "esbctl queues (admin API) lists queue:orders" sh -c "'$abs_esbctl' --config esb.xml queues | grep -q 'queue:orders'"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/xml' \
    -d 'this is not XML' "http://127.0.0.1:$PORT/legacy/orders")
ok "a malformed XML order is accepted (202) ..." [ "$code" = 202 ]
dlq_has_reason() { "$abs_esbctl" --config esb.xml dlq list dlq.legacy-orders 2>/dev/null | grep -qi "xml"; }
ok "... and esbctl dlq list shows it dead-lettered with the reason" wait_for 50 dlq_has_reason
ok "unknown path is 404" [ "$(curl -s -o /dev/null -w '%{http_code}' -d x "http://127.0.0.1:$PORT/nope")" = 404 ]
ok "stops cleanly" esbd_stop
ok "esbctl queues lists the route queues" sh -c "'$abs_esbctl' queues --data var/bus | grep -q 'queue:orders'"
done_testing

#!/usr/bin/env bash
# esbctl test (dry runs, docs/esbctl.md): the golden folders of the shipped
# routes (tests/data/golden/ROUTE for examples/transforms.xml) pass; the
# examples in docs/esbctl.md give the output the doc shows; a changed or
# missing .expected fails with a diff and exit 1; --update writes the same
# bytes the repository holds (masking makes runs repeatable); .headers
# files, dropped messages, binary bodies; routing errors exit 1 with the
# reason; usage errors exit 2; and nothing touches a bus directory.
. "$(dirname "$0")/lib.sh"
esb_setup
src=$(cd "$top_srcdir" && pwd)
abs_esbctl=$(cd "$(dirname "$ESBCTL")" && pwd)/$(basename "$ESBCTL")
G=$src/tests/data/golden
X=$src/examples/transforms.xml
cd "$T" || bail "cd"

# ---- the shipped golden folders (run from an empty directory: no var/ appears) ----
for dir in "$G"/*/; do
    route=$(basename "$dir")
    n=$(find "$dir" -maxdepth 1 -name '*.in' | wc -l)
    "$abs_esbctl" test "$X" --route "$route" --dir "$dir" >"out.$route" 2>&1
    rc=$?
    ok "golden $route: exit 0" [ "$rc" = 0 ]
    ok "golden $route: $n cases, all PASS" grep -qx "$n passed, 0 failed" "out.$route"
    [ "$rc" = 0 ] || sed 's/^/# /' "out.$route"
done
ok "the dry runs created no bus or output directory" not test -e var

# ---- the examples of docs/esbctl.md ----
# Each block after a "esbctl-test.sh runs this example" comment: the first
# line is "$ esbctl ...", the rest its output. UUIDv7s (new ids) are masked.
mask() { sed -E 's/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}/<id>/g'; }
awk '/esbctl-test.sh runs this example/ { n++; getline; inb = 1; next }
     inb && /^```/ { inb = 0; next }
     inb { print > ("doc-example." n) }' "$src/docs/esbctl.md"
examples=0
for f in doc-example.*; do
    [ -f "$f" ] || continue
    examples=$((examples + 1))
    cmd=$(head -1 "$f")
    tail -n +2 "$f" | mask >"$f.want"
    eval "(cd '$src' && '$abs_esbctl' ${cmd#\$ esbctl })" 2>&1 | mask >"$f.got"
    ok "docs/esbctl.md example $examples: ${cmd:0:70}..." cmp -s "$f.want" "$f.got"
    cmp -s "$f.want" "$f.got" || diff "$f.want" "$f.got" | sed 's/^/# /' | head -20
done
ok "docs/esbctl.md has the two examples" [ "$examples" = 2 ]

# ---- a failing folder ----
cp -r "$G/legacy-orders" g
lo=$(find g -name '*.in' | wc -l) # cases in the shipped folder
sed -i 's/PO-2024-0042/PO-2024-9999/' g/order-basic.xml.expected
rm g/order-minimal.xml.expected
"$abs_esbctl" test "$X" --route legacy-orders --dir g >fail.out 2>&1
rc=$?
ok "a changed and a missing .expected: exit 1" [ "$rc" = 1 ]
ok "FAIL for the changed case" grep -q '^FAIL order-basic.xml: the outputs differ' fail.out
ok "... with the line and column" grep -q '^    line 5, column 140:$' fail.out
ok "... the expected side" grep -q '^    - \.\.\..*"subject":"PO-2024-9999"' fail.out
ok "... and the actual side" grep -q '^    + \.\.\..*"subject":"PO-2024-0042"' fail.out
ok "FAIL for the missing .expected" grep -q '^FAIL order-minimal.xml: no order-minimal.xml.expected' fail.out
ok "the others PASS" eval '[ "$(grep -c "^PASS" fail.out)" = $((lo - 2)) ]'
ok "summary" grep -qx "$((lo - 2)) passed, 2 failed" fail.out
"$abs_esbctl" test "$X" --route legacy-orders --dir g --update >update.out 2>&1
rc=$?
ok "--update: exit 0, every case UPDATED" eval \
    '[ $rc = 0 ] && [ "$(grep -c "^UPDATED" update.out)" = $lo ] && grep -qx "$lo updated" update.out'
same_files=1
for f in "$G"/legacy-orders/*.expected; do cmp -s "$f" "g/$(basename "$f")" || same_files=0; done
ok "--update wrote exactly the shipped .expected files (runs are repeatable)" [ "$same_files" = 1 ]
"$abs_esbctl" test "$X" --route crm-customers --dir g2 >/dev/null 2>&1
ok "no such folder: exit 1" [ $? = 1 ]
mkdir empty
"$abs_esbctl" test "$X" --route crm-customers --dir empty >empty.out 2>&1
rc=$?
ok "a folder without .in files: exit 1, said so" eval '[ $rc = 1 ] && grep -q "holds no .in files" empty.out'

# ---- a user's own route: .headers, set-header, filter (dropped), binary bodies ----
mkdir own
cat >own.xml <<'XML'
<esb xmlns="urn:esb:config:1">
  <connectors><http-in id="web" listen="127.0.0.1:1"/></connectors>
  <route id="kinds" from="http-in:web" path="/k">
    <filter header="x-kind" equals="order"/>
    <set-header name="x-seen" value="{id} {content-type}"/>
    <to uri="queue:orders"/>
  </route>
  <route id="orders" from="queue:orders"><filter header="x-never" exists="true"/></route>
</esb>
XML
printf 'hello\n' >own/kept.txt.in
printf '# a comment\n\nX-Kind: order\ncontent-type: text/x-order\n' >own/kept.txt.headers
printf 'bye' >own/other.in
printf '\000\001\377' >own/binary.bin.in
printf 'x-kind: order\n' >own/binary.bin.headers
"$abs_esbctl" test own.xml --route kinds --dir own --update >/dev/null 2>&1
ok "own folder: --update" [ $? = 0 ]
ok "kept: the headers file set the content type and a header; set-header used the golden id" \
    eval '[ "$(cat own/kept.txt.expected)" = "$(printf "to: queue:orders\ncontent-type: text/x-order\nesb-source: web\nx-kind: order\nx-seen: 00000000-0000-7000-8000-000000000001 text/x-order\n\nhello\n")" ]'
ok "other: the filter dropped it" eval '[ "$(cat own/other.expected)" = dropped ]'
ok "binary: the content type from the extension, the body as hex" \
    eval 'grep -qx "content-type: application/octet-stream" own/binary.bin.expected &&
          grep -qx "(3 bytes, not text; hex:)" own/binary.bin.expected && grep -qx "00 01 ff" own/binary.bin.expected'
"$abs_esbctl" test own.xml --route kinds --dir own >own.out 2>&1
rc=$?
ok "own folder passes" eval '[ $rc = 0 ] && grep -qx "3 passed, 0 failed" own.out'
printf 'no colon here\n' >own/other.headers
"$abs_esbctl" test own.xml --route kinds --dir own >own.out 2>&1
rc=$?
ok "a bad .headers line: exit 1 with FILE:LINE" eval '[ $rc = 1 ] && grep -q "other.headers:1: expected .name: value." own.out'

# ---- masking: ids and times made by the run, not those of the input ----
mkdir -p lua mask
cat >lua/stamp.lua <<'LUA'
function transform(msg)
  msg.body = table.concat({esb.uuid.v7(), esb.time.format(esb.time.now()), msg.id,
    "0190b2c4-6f2a-7c3e-8d1b-2a9f00000042", "2024-05-01T12:00:00Z",
    esb.time.format(esb.time.now(), 120), msg.body}, " ")
  msg.headers["x-id"] = esb.uuid.v7()
  return msg
end
LUA
cat >mask.xml <<'XML'
<esb xmlns="urn:esb:config:1">
  <lua dir="lua"/>
  <connectors><http-in id="web" listen="127.0.0.1:1"/></connectors>
  <route id="stamp" from="http-in:web" path="/s">
    <transform lua="stamp.lua"/>
    <to uri="queue:q"/>
  </route>
  <route id="q" from="queue:q"><filter header="x-never" exists="true"/></route>
</esb>
XML
printf 'in' >mask/one.in
"$abs_esbctl" test mask.xml --route stamp --dir mask --update >/dev/null 2>&1
ok "masking: a new UUIDv7 and now (UTC and +02:00) masked; the input id and the input's own id and time kept" \
    eval '[ "$(sed -n 6p mask/one.expected)" = "<uuid> <now> 00000000-0000-7000-8000-000000000001 0190b2c4-6f2a-7c3e-8d1b-2a9f00000042 2024-05-01T12:00:00Z <now> in" ] &&
          grep -qx "x-id: <uuid>" mask/one.expected'
"$abs_esbctl" test mask.xml --route stamp --dir mask >mask.out 2>&1
rc=$?
ok "masking: a second run passes against the first" eval '[ $rc = 0 ] && grep -qx "1 passed, 0 failed" mask.out'
[ "$rc" = 0 ] || sed 's/^/# /' mask.out mask/one.expected

# ---- one message ----
cd "$src" || bail "cd src"
"$abs_esbctl" test "$X" -r mainframe-accounts -m tests/data/transforms/accounts-batch.txt >"$T/one.out" 2>&1
ok "one message: exit 0" [ $? = 0 ]
ok "... the content type guessed from .txt" grep -q '^    content-type: text/plain$' "$T/one.out"
ok "... each part of the split" eval '[ "$(grep -c "transform: part [123] of 3" "$T/one.out")" = 3 ]'
ok "... then the step each part runs" eval '[ "$(grep -c "^step 2: to (line" "$T/one.out")" = 3 ]'
ok "... where they go" grep -q -- '-> file-out:accounts (delivered from bus queue deliver:accounts)' "$T/one.out"
ok "... result: 3 outputs" grep -qx 'result: 3 outputs' "$T/one.out"
"$abs_esbctl" test "$X" -r legacy-orders -m tests/data/golden/legacy-orders/bad-quantity.xml.in \
    >"$T/err.out" 2>&1
ok "a routing error: exit 1" [ $? = 1 ]
ok "... the DLQ it would go to and the reason" eval \
    'grep -q "^routing error (the message would be dead-lettered to dlq.legacy-orders):" "$T/err.out" &&
     grep -q "'"'"'3x'"'"' is not an integer" "$T/err.out"'
"$abs_esbctl" test "$X" -r legacy-orders -m tests/data/transforms/order-basic.xml \
    --header correlation-id=c-42 --header traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \
    >"$T/hdr.out" 2>&1
ok "--header reaches the transform (correlation and trace extensions)" \
    grep -q '"correlationid":"c-42","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"' "$T/hdr.out"
"$abs_esbctl" test "$X" -r nope -m tests/data/transforms/order-basic.xml >"$T/nope.out" 2>&1
rc=$?
ok "unknown route: exit 1, the routes listed" eval '[ $rc = 1 ] && grep -q "has no route .nope. (routes: legacy-orders, events," "$T/nope.out"'
"$abs_esbctl" test "$X" -r legacy-orders -m /nonexistent >/dev/null 2>&1
ok "unreadable message file: exit 1" [ $? = 1 ]
"$abs_esbctl" test "$X" -r legacy-orders -m tests/data/transforms/order-basic.xml -H novalue >/dev/null 2>&1
ok "--header without '=': exit 1" [ $? = 1 ]
usage() { "$abs_esbctl" test "$@" >/dev/null 2>&1; [ $? = 2 ]; }
ok "usage: no --route" usage "$X" -m tests/data/transforms/order-basic.xml
ok "usage: --message and --dir" usage "$X" -r events -m x -d y
ok "usage: neither" usage "$X" -r events
ok "usage: --update without --dir" usage "$X" -r events -m x --update
ok "usage: no config" usage -r events -m x
echo '<esb xmlns="urn:esb:config:1"><route id="r"/></esb>' >"$T/bad.xml"
"$abs_esbctl" test "$T/bad.xml" -r r -m x >"$T/bad.out" 2>&1
rc=$?
ok "a broken config: exit 1 with FILE:LINE" eval '[ $rc = 1 ] && grep -q "bad.xml:1:" "$T/bad.out"'
done_testing

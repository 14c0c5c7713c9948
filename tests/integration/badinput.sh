#!/usr/bin/env bash
# Hostile bodies against a real esbd: malformed XML and JSON, a billion-laughs
# document, external entities / external DTD / XInclude pointing at
# /etc/passwd, deeply nested XML and JSON, JSON with duplicate keys, and a
# ReDoS-prone pattern in the config (^(a+)+$) against a hostile body. Each is
# accepted (202) and then dead-lettered with a clear reason (read back with
# esbctl browse after the stop), /etc/passwd never leaks into an output or a
# dead letter, a good message is routed after every bad one, and memory stays
# bounded over a few hundred more bad messages.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/bodies"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" disk-low-water="0"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" max-body="1MB"/>
    <file-out id="xml" dir="@T@/out-xml"/>
    <file-out id="json" dir="@T@/out-json"/>
    <file-out id="re" dir="@T@/out-re"/>
  </connectors>
  <route id="x" from="http-in:web" path="/xml">
    <filter xpath="/order"/>
    <to uri="file-out:xml"/>
  </route>
  <route id="j" from="http-in:web" path="/json">
    <filter json="$.kind" equals="order"/>
    <to uri="file-out:json"/>
  </route>
  <route id="re" from="http-in:web" path="/re">
    <filter regex="^(a+)+$"/>
    <to uri="file-out:re"/>
  </route>
</esb>
XML

# The hostile bodies, as files.
B=$T/bodies
printf '<order><total>5</total></order' >"$B/malformed.xml"
printf '{"kind":"order","total":' >"$B/malformed.json"
cat >"$B/laughs.xml" <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<order>&lol9;</order>
EOF
cat >"$B/xxe.xml" <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE order [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<order>&xxe;</order>
EOF
cat >"$B/extdtd.xml" <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE order SYSTEM "file:///etc/passwd">
<order/>
EOF
# No DOCTYPE: an undeclared entity is just an error.
printf '<order>&xxe;</order>' >"$B/undeclared.xml"
{
    printf '%.0s<a>' $(seq 1 100000)
    printf '%.0s</a>' $(seq 1 100000)
} >"$B/deep.xml"
head -c 100000 /dev/zero | tr '\0' '[' >"$B/deep.json"
printf '{"kind":"order","kind":"refund"}' >"$B/dupkeys.json"
{
    head -c 5000 /dev/zero | tr '\0' 'a'
    printf '!'
} >"$B/redos.txt"
# XInclude is never processed: this one is a well-formed <order> and goes
# through as it is, without the file's content.
printf '<order xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></order>' >"$B/xinclude.xml"

esbd_start

# bad NAME PATH CT REASON-ERE: POST the body, expect 202, remember its id
# and the reason its dead letter must give; then a good message on the same
# path must be routed.
good_n=0
bad() {
    local name=$1 path=$2 ct=$3 reason=$4 code id
    code=$(post_file "$path" "$B/$name" "$ct")
    id=$(last_id)
    ok "$name: accepted (202)" eval '[ "$code" = 202 ] && [ -n "$id" ]'
    echo "$id $name $reason" >>"$T/expect-dlq"
    good_n=$((good_n + 1))
    case $path in
    /xml) good="<order><n>$good_n</n></order>" ;;
    /json) good="{\"kind\":\"order\",\"n\":$good_n}" ;;
    /re) good=$(head -c $((good_n + 3)) /dev/zero | tr '\0' a) ;;
    esac
    local before
    before=$(count_files "$T/out-${path#/}")
    ok "$name: a good message right after it is routed" \
        eval '[ "$(post "$path" "$good" "$ct")" = 202 ] &&
            wait_for 50 count_is "$T/out-${path#/}" $((before + 1)) && dir_has "$T/out-${path#/}" "$good"'
}
bad malformed.xml /xml application/xml 'not XML'
bad malformed.json /json application/json 'not JSON'
bad laughs.xml /xml application/xml 'DOCTYPE'
bad xxe.xml /xml application/xml 'DOCTYPE'
bad extdtd.xml /xml application/xml 'DOCTYPE'
bad undeclared.xml /xml application/xml 'not XML'
bad deep.xml /xml application/xml 'not XML'
bad deep.json /json application/json 'JSON nested deeper'
bad dupkeys.json /json application/json 'not JSON.*duplicate'
bad redos.txt /re text/plain 'regex limit hit'
ok "xinclude.xml: accepted" [ "$(post_file /xml "$B/xinclude.xml" application/xml)" = 202 ]
ok "xinclude.xml: routed as it is (XInclude not processed)" wait_for 50 dir_has "$T/out-xml" 'xi:include'
ok "esbd alive after the hostile bodies" esbd_alive
nbad=$(wc -l <"$T/expect-dlq")
ok "every bad message dead-lettered (logged)" \
    wait_for 100 eval '[ "$(grep -c "routing error" "$T/esbd.log")" -ge '"$nbad"' ]'

# Memory: 240 more bad messages, each kind in turn.
rss0=$(esbd_rss_kb)
kinds=(laughs.xml:/xml deep.json:/json redos.txt:/re deep.xml:/xml malformed.json:/json xxe.xml:/xml)
refused=0
for i in $(seq 1 40); do
    for k in "${kinds[@]}"; do
        [ "$(post_file "${k#*:}" "$B/${k%%:*}" text/plain)" = 202 ] || refused=$((refused + 1))
    done
done
want=$((nbad + 240))
wait_for 200 eval '[ "$(grep -c "routing error" "$T/esbd.log")" -ge '"$want"' ]'
rss1=$(esbd_rss_kb)
diag "VmRSS before ${rss0} KiB, after 240 more bad messages ${rss1} KiB (growth $(((rss1 - rss0) / 1024)) MiB)"
ok "all 240 accepted" [ "$refused" = 0 ]
ok "all 240 dead-lettered" [ "$(grep -c "routing error" "$T/esbd.log")" -ge "$want" ]
ok_rss "memory growth under 64 MiB" [ $((rss1 - rss0)) -lt $((64 * 1024)) ]
ok "still serving" routed /xml '<order><last/></order>' "$T/out-xml" application/xml
ok "no output holds /etc/passwd content" not grep -rq 'root:x:0:0' "$T"/out-*
ok "no bad message reached an output" not grep -rlq 'lol9\|xxe\|\[\[\[\|aaaaaaaaaa!' "$T"/out-*
ok "clean stop" esbd_stop

# The dead letters.
for q in x j re; do browse "dlq.$q" --limit 100000; done >"$T/dlq.json"
ok "dead letters: $nbad + 240" [ "$(wc -l <"$T/dlq.json")" = $((nbad + 240)) ]
while read -r id name reason; do
    line=$(grep -F "\"id\":\"$id\"" "$T/dlq.json")
    ok "$name: dead letter with reason /$reason/" eval 'printf "%s" "$line" | grep -Eq "\"reason\":\"[^\"]*$reason"'
done <"$T/expect-dlq"
sed -n 's/.*"reason":"\([^"]*\)".*/\1/p' "$T/dlq.json" | sort | uniq -c | sed 's/^ */# reasons: /'
ok "no dead letter holds /etc/passwd content" not grep -q 'root:x:0:0' "$T/dlq.json"
ok "nothing else left queued" [ -z "$("$ESBCTL" queues --data "$T/bus" | awk 'NR > 1 && $2 != 0 && $1 !~ /^dlq\./')" ]
done_testing

#!/usr/bin/env bash
# Lua transforms against a real esbd: a route runs tests/data/lua/hostile.lua,
# which misbehaves according to the body - an endless loop, string.rep past
# the memory cap, a table bomb, deep recursion, coroutine bombs, a loop inside
# a coroutine, a loop that pcalls the limit away, a backtracking pattern, a
# plain error, and a call that tampers with string.upper, string.rep, the
# string metatable and a global. Each bad message is accepted (202) and then
# dead-lettered with the reason (read back with esbctl browse after the
# stop); esbd stays alive; the next good message is transformed correctly
# (output compared byte for byte) by the same worker; memory stays bounded
# over many more bombs. Also: a lua= filter, a split transform, and a
# config whose script does not compile (esbctl check names script:line).
. "$(dirname "$0")/lib.sh"
esb_setup
SRC=$(cd "$top_srcdir" && pwd)
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" disk-low-water="0"/>
  <workers count="1"/>
  <lua dir="@SRC@/tests/data/lua" memory="32MB" instructions="5000000"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" max-body="1MB"/>
    <file-out id="out" dir="@T@/out"/>
    <file-out id="pout" dir="@T@/pout"/>
    <file-out id="sout" dir="@T@/sout"/>
  </connectors>
  <route id="lua" from="http-in:web" path="/lua">
    <transform lua="hostile.lua"/>
    <to uri="file-out:out"/>
  </route>
  <route id="pred" from="http-in:web" path="/pred">
    <filter lua="contract.lua"/>
    <to uri="file-out:pout"/>
  </route>
  <route id="split" from="http-in:web" path="/split">
    <transform lua="contract.lua" function="split"/>
    <to uri="file-out:sout"/>
  </route>
</esb>
XML
sed -i "s|@SRC@|$SRC|" "$T/esb.xml"
ok "esbctl check accepts the config" eval '"$ESBCTL" check "$T/esb.xml" >/dev/null' 
esbd_start

# The output file holding exactly BODY (no newline) exists in DIR.
has_body() {
    local f
    for f in "$1"/*; do
        [ -f "$f" ] && [ "$(cat "$f")" = "$2" ] && [ "$(stat -c %s "$f")" = "${#2}" ] && return 0
    done
    return 1
}

# bad CASE REASON-ERE: POST the case, expect 202, remember id and reason;
# then a good message must come out transformed exactly.
n=0
bad() {
    local name=$1 reason=$2 code id
    code=$(post /lua "$name")
    id=$(last_id)
    ok "$name: accepted (202)" eval '[ "$code" = 202 ] && [ -n "$id" ]'
    echo "$id $name $reason" >>"$T/expect-dlq"
    n=$((n + 1))
    ok "$name: the next message is transformed correctly" \
        eval '[ "$(post /lua "good-$n")" = 202 ] && wait_for 100 has_body "$T/out" "UPPER:GOOD-$n X!"'
    ok "$name: esbd alive" esbd_alive
}
bad loop 'instruction limit exceeded \(5000000 instructions\)'
bad rep 'resulting string too large'
bad rep30 'memory limit exceeded \(33554432 bytes\)'
bad tablebomb 'memory limit exceeded'
bad recursion 'memory limit exceeded|stack overflow'
bad cobomb 'limit exceeded'
bad conest 'instruction limit exceeded'
bad coloop 'hostile.lua:31: instruction limit exceeded'
bad catchloop 'instruction limit exceeded'
bad pattern 'instruction limit exceeded'
bad error 'hostile.lua:36: refused: bad order; stack traceback:'

# A call that tampers with shared things succeeds (and sees its changes)...
ok "poison: accepted" [ "$(post /lua poison)" = 202 ]
ok "poison: its own output shows its changes" wait_for 100 has_body "$T/out" "UPPER:POISONED Xpoisoned"
# ... and the next message sees none of them.
ok "after poison: the next message is transformed correctly" \
    eval '[ "$(post /lua after-poison)" = 202 ] && wait_for 100 has_body "$T/out" "UPPER:AFTER-POISON X!"'
nbad=$(wc -l <"$T/expect-dlq")
ok "every bad message dead-lettered (logged)" \
    wait_for 100 eval '[ "$(grep -c "routing error" "$T/esbd.log")" -ge '"$nbad"' ]'

# Memory: 40 more bombs of each kind that fills the 32 MB cap.
rss0=$(esbd_rss_kb)
refused=0
for i in $(seq 1 20); do
    for k in tablebomb cobomb rep30 recursion; do
        [ "$(post /lua "$k")" = 202 ] || refused=$((refused + 1))
    done
done
want=$((nbad + 80))
wait_for 600 eval '[ "$(grep -c "routing error" "$T/esbd.log")" -ge '"$want"' ]'
rss1=$(esbd_rss_kb)
diag "VmRSS before ${rss0} KiB, after 80 more bombs ${rss1} KiB (growth $(((rss1 - rss0) / 1024)) MiB)"
ok "80 bombs accepted" [ "$refused" = 0 ]
ok "80 bombs dead-lettered" [ "$(grep -c "routing error" "$T/esbd.log")" -ge "$want" ]
ok_rss "memory growth under 64 MiB" [ $((rss1 - rss0)) -lt $((64 * 1024)) ]
ok "still transforming" eval '[ "$(post /lua last)" = 202 ] && wait_for 100 has_body "$T/out" "UPPER:LAST X!"'

# A lua= filter and a split.
ok "lua filter: x-pass: yes goes through" \
    eval '[ "$(post /pred passed text/plain -H "X-Pass: yes")" = 202 ] && wait_for 100 has_body "$T/pout" passed'
ok "lua filter: without it, filtered" [ "$(post /pred stopped)" = 202 ]
ok "split: accepted" [ "$(post /split 'a,bb,ccc')" = 202 ]
ok "split: three outputs a, bb, ccc" \
    wait_for 100 eval 'has_body "$T/sout" a && has_body "$T/sout" bb && has_body "$T/sout" ccc'
ok "lua filter: the filtered one never arrives" eval 'sleep 0.3; ! has_body "$T/pout" stopped'
ok "no bad message reached an output" \
    not grep -rlqE '^(loop|rep|rep30|tablebomb|recursion|cobomb|conest|coloop|catchloop|pattern|error)$' "$T/out"
ok "clean stop" esbd_stop

# The dead letters.
browse dlq.lua --limit 100000 >"$T/dlq.json"
ok "dead letters: $nbad + 80" [ "$(wc -l <"$T/dlq.json")" = $((nbad + 80)) ]
while read -r id name reason; do
    line=$(grep -F "\"id\":\"$id\"" "$T/dlq.json")
    ok "$name: dead letter names the step and /$reason/" eval 'printf "%s" "$line" |
        grep -Eq "\"reason\":\"step 1 \\(transform lua=hostile.lua, line 13\\): [^\"]*($reason)"'
done <"$T/expect-dlq"
sed -n 's/.*"reason":"\([^"]*\)".*/\1/p' "$T/dlq.json" | cut -c1-110 | sort | uniq -c |
    sed 's/^ */# reasons: /'

# A script that does not compile: the config is refused with both places.
sed -e 's|<transform lua="hostile.lua"/>|<transform lua="bad-syntax.lua"/>|' "$T/esb.xml" >"$T/bad.xml"
"$ESBCTL" check "$T/bad.xml" >"$T/check.out" 2>&1
rc=$?
ok "esbctl check refuses a script with a syntax error" [ "$rc" != 0 ]
ok "the error names the config line and the script line" \
    grep -q "bad.xml:13: element <transform>: attribute 'lua': lua script bad-syntax.lua:3:" "$T/check.out"
done_testing

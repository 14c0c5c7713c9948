#!/usr/bin/env bash
# file-in -> file-out end to end with a real esbd: files dropped in the inbox
# come out byte for byte and move to done-dir; dotfiles and excluded names
# are left alone; a symlink is never followed (it goes to error-dir with a
# .reason); directories and too-large files go to error-dir; a file that the
# route cannot handle (non-XML under an XPath predicate) is dead-lettered
# with the reason; a hostile file-out name template value cannot leave the
# output directory.
. "$(dirname "$0")/lib.sh"
esb_setup
mkdir -p "$T/in" "$T/xin"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@"/>
    <file-in id="drop" dir="@T@/in" done-dir="@T@/done" error-dir="@T@/failed"
             exclude="*.part" stable-for="200ms" poll-interval="50ms" max-file-size="4KB"/>
    <file-in id="xdrop" dir="@T@/xin" stable-for="200ms" poll-interval="50ms"
             content-type="application/xml"/>
    <file-out id="out" dir="@T@/out" name="{header:esb-file-name}"/>
    <file-out id="xout" dir="@T@/xout" name="{header:esb-file-name}"/>
    <file-out id="named" dir="@T@/named" name="{header:x-name}"/>
  </connectors>
  <route id="copy" from="file-in:drop"><to uri="file-out:out"/></route>
  <route id="orders" from="file-in:xdrop">
    <filter xpath="/order"/>
    <to uri="file-out:xout"/>
  </route>
  <route id="named" from="http-in:web" path="/named"><to uri="file-out:named"/></route>
</esb>
XML
echo "TOPSECRET-$$" >"$T/secret.txt"
esbd_start

# Plain drops: text, binary (every byte value), a name with spaces and UTF-8.
printf 'hello,world\n1,2\n' >"$T/src-a"
cp "$T/src-a" "$T/in/a.csv"
head -c 3000 /dev/urandom >"$T/src-bin"
for i in $(seq 0 255); do printf "\\x$(printf %02x "$i")"; done >>"$T/src-bin"
cp "$T/src-bin" "$T/in/blob.bin"
printf 'weird\n' >"$T/src-weird"
cp "$T/src-weird" "$T/in/we ird ü;\$(x).txt"
# Left alone: a dotfile, a name like "..evil" (also a dotfile), an excluded name.
echo dot >"$T/in/.hidden"
echo evil >"$T/in/..evil"
echo partial >"$T/src-partial"
cp "$T/src-partial" "$T/in/upload.part"
# Refused: a symlink to a secret, a directory, a file over max-file-size.
ln -s "$T/secret.txt" "$T/in/link.txt"
mkdir "$T/in/subdir"
head -c 5000 /dev/zero | tr '\0' 'z' >"$T/in/big.txt"

ok "text file comes out under its name" wait_for 100 test -f "$T/out/a.csv"
ok "text output has the same bytes" cmp -s "$T/out/a.csv" "$T/src-a"
ok "binary file comes out" wait_for 50 test -f "$T/out/blob.bin"
ok "binary output has the same bytes (all 256 byte values)" cmp -s "$T/out/blob.bin" "$T/src-bin"
ok "odd name (space, UTF-8, shell chars) kept" wait_for 50 cmp -s "$T/out/we ird ü;\$(x).txt" "$T/src-weird"
ok "originals moved to done-dir" wait_for 50 test -f "$T/done/a.csv" -a -f "$T/done/blob.bin" -a -f "$T/done/we ird ü;\$(x).txt"
ok "done-dir copy is the original" cmp -s "$T/done/blob.bin" "$T/src-bin"
ok "inbox no longer holds the accepted files" not test -e "$T/in/a.csv" -o -e "$T/in/blob.bin"

ok "symlink moved to error-dir" wait_for 50 test -L "$T/failed/link.txt"
ok "symlink has a .reason naming it" grep -q "symbolic link" "$T/failed/link.txt.reason"
ok "symlink target untouched" grep -q "TOPSECRET-$$" "$T/secret.txt"
ok "directory moved to error-dir with a reason" wait_for 50 grep -q "directory" "$T/failed/subdir.reason"
ok "too-large file in error-dir" wait_for 50 test -f "$T/failed/big.txt"
ok "too-large reason says so" grep -q "file too large" "$T/failed/big.txt.reason"

# Give the watcher several more scans before checking what it left alone.
sleep 0.6
ok "symlink target content never reached any output" not dir_has "$T/out" "TOPSECRET"
ok "symlink target content not in done-dir" not dir_has "$T/done" "TOPSECRET"
ok "dotfile left in the inbox" test -f "$T/in/.hidden"
ok "..evil (a dotfile) left in the inbox" test -f "$T/in/..evil"
ok "excluded *.part left in the inbox" test -f "$T/in/upload.part"
ok "nothing ignored reached the output" not test -e "$T/out/.hidden" -o -e "$T/out/upload.part" -o -e "$T/out/..evil"
ok "output holds exactly the 3 accepted files" [ "$(count_files "$T/out")" = 3 ]
ok "no temp files left in the output dir" [ -z "$(find "$T/out" -name '.tmp-*')" ]
ok "claim dir is empty" [ -z "$(ls -A "$T/in/.esb-work")" ]

# An excluded name renamed into a matching one is picked up (the safe pattern).
mv "$T/in/upload.part" "$T/in/upload.csv"
ok "renamed upload picked up" wait_for 50 cmp -s "$T/out/upload.csv" "$T/src-partial"

# XPath route: an XML order goes through, a non-XML file is dead-lettered.
echo '<order><n>1</n></order>' >"$T/xin/good.xml"
echo 'this is, not; xml' >"$T/xin/bad.xml"
ok "XML file routed by XPath" wait_for 100 test -f "$T/xout/good.xml"
ok "non-XML file accepted (moved to done)" wait_for 50 test -f "$T/xin/done/bad.xml"
ok "non-XML file not in the output" not test -e "$T/xout/bad.xml"
ok "routing error logged with the dead-letter queue" wait_for 50 log_has "routing error.*dlq\.orders"

# Hostile values for the file-out name template {header:x-name}.
rm -f /tmp/esb-escape-$$ 2>/dev/null
before=$(find "$T" -type f | grep -v "^$T/named/\|^$T/bus/\|esbd.log\|last-" | sort | md5sum)
for name in "../../esb-escape-$$" ".." "/tmp/esb-escape-$$" "a/../../b" "..\\..\\x" ".hidden-out"; do
    code=$(post /named "payload for $name" text/plain -H "x-name: $name")
    [ "$code" = 202 ] || diag "x-name '$name' answered $code"
done
ok "all hostile-name messages delivered inside the output dir" wait_for 50 count_is "$T/named" 6
ok "nothing escaped to /tmp" not test -e "/tmp/esb-escape-$$"
ok "no escaped file next to the test dir" [ -z "$(find "$T/.." -maxdepth 1 -name "esb-escape-$$*")" ]
after=$(find "$T" -type f | grep -v "^$T/named/\|^$T/bus/\|esbd.log\|last-" | sort | md5sum)
ok "no file created elsewhere in the test dir" [ "$before" = "$after" ]
ok "no hidden or dot-dot name in the output dir" [ -z "$(find "$T/named" -mindepth 1 -name '.*')" ]
ok "no subdirectory created in the output dir" [ -z "$(find "$T/named" -mindepth 1 -type d)" ]
ok "sanitized name holds its payload" dir_has "$T/named" "payload for ../../esb-escape-$$"
diag "names written: $(ls "$T/named" | tr '\n' ' ')"
ok "a message whose name renders empty is accepted" [ "$(post /named 'empty-name' text/plain -H 'x-name;')" = 202 ]
ok "...then dead-lettered" wait_for 50 log_has "dead-lettered.*dlq\.named"
ok "...and not written" [ "$(count_files "$T/named")" = 6 ]
ok "esbd still alive" esbd_alive
ok "clean stop" esbd_stop

# The dead letters, read from the bus after the stop.
browse dlq.orders >"$T/dlq-orders.json" 2>"$T/browse.err"
ok "dlq.orders holds exactly the non-XML file" [ "$(wc -l <"$T/dlq-orders.json")" = 1 ]
ok "its reason says the body is not XML" grep -q '"reason":"[^"]*not XML' "$T/dlq-orders.json"
ok "it carries the file name header" grep -q '"esb-file-name":"bad.xml"' "$T/dlq-orders.json"
ok "it carries the body" grep -q 'this is, not; xml' "$T/dlq-orders.json"
browse dlq.named >"$T/dlq-named.json" 2>>"$T/browse.err"
ok "dlq.named holds the empty-name message with its reason" grep -q '"reason":"[^"]*empty file name' "$T/dlq-named.json"
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "no other dead letters, nothing left queued" [ "$(awk 'NR > 1 && $2 != 0 { print $1 "=" $2 }' "$T/queues.txt" | tr '\n' ' ')" = "dlq.named=1 dlq.orders=1 " ]
done_testing

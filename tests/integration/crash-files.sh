#!/usr/bin/env bash
# Crash test over file-in: a writer appending slowly to a file in the inbox
# (a line every 100 ms for 3 s, stable-for=1s) is never read early: its one
# output is the complete file. Then N files are dropped while esbd is killed
# with SIGKILL at random moments (ESB_IT_FILE_KILLS, default 6), with a second
# slow writer running; after a final clean run every file is in done-dir
# with its output, none is lost, none is in error-dir, none is left behind,
# and none was picked up twice.
. "$(dirname "$0")/lib.sh"
esb_setup_bg
KILLS=${ESB_IT_FILE_KILLS:-6}
N=${ESB_IT_FILES:-300}
mkdir -p "$T/slow" "$T/in" "$T/out"
write_config <<'XML'
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" disk-low-water="0"/>
  <workers count="2"/>
  <connectors>
    <file-in id="slow" dir="@T@/slow" stable-for="1s" poll-interval="50ms"/>
    <file-in id="bulk" dir="@T@/in" stable-for="200ms" poll-interval="50ms"/>
    <file-out id="sout" dir="@T@/sout" name="{header:esb-file-name}"/>
    <file-out id="out" dir="@T@/out" name="{id}"/>
  </connectors>
  <route id="s" from="file-in:slow"><to uri="file-out:sout"/></route>
  <route id="b" from="file-in:bulk">
    <log message="processing {id} {header:esb-file-name}"/>
    <to uri="file-out:out"/>
  </route>
</esb>
XML

# slow_writer NAME: append 30 lines to slow/NAME through one open descriptor,
# one every 100 ms; record in $T/early.NAME if the file left the inbox before
# the last line was written, and in $T/gap.NAME the longest pause between
# two appends (ms): a writer that pauses for stable-for (1 s, e.g. on an
# overloaded machine) may rightly be read before it is done.
slow_writer() {
    local f="$T/slow/$1" i t last=${EPOCHREALTIME/./} gap=0
    exec 3>>"$f"
    for i in $(seq 1 30); do
        [ -d "$T" ] || return
        printf 'line %02d of %s\n' "$i" "$1" >&3
        t=${EPOCHREALTIME/./}
        [ $(((t - last) / 1000)) -gt "$gap" ] && gap=$(((t - last) / 1000))
        last=$t
        [ -e "$f" ] || echo "gone before line $i (longest pause so far ${gap} ms)" >>"$T/early.$1"
        sleep 0.1
    done
    exec 3>&-
    echo "$gap" >"$T/gap.$1"
    seq 1 30 | while read -r i; do printf 'line %02d of %s\n' "$i" "$1"; done >"$T/expect.$1"
}

# not_read_early NAME: the writer's file stayed in the inbox until complete,
# unless the writer itself paused for stable-for or longer.
not_read_early() {
    [ -e "$T/early.$1" ] || return 0
    diag "$1: $(head -1 "$T/early.$1")"
    grep "file=$1 " "$T/esbd.log" | sed 's/^/# /'
    [ "$(cat "$T/gap.$1")" -ge 1000 ]
}

esbd_start_tracked

# ---- 1. a slow writer, no crash ----
slow_writer growing.txt
ok "slow writer: file stayed in the inbox until complete" not_read_early growing.txt
ok "slow writer: output appears once stable" wait_for 50 test -f "$T/sout/growing.txt"
ok "slow writer: the output is the complete file (30 lines)" \
    eval 'cmp -s "$T/sout/growing.txt" "$T/expect.growing.txt" || [ "$(cat "$T/gap.growing.txt")" -ge 1000 ]'
ok "slow writer: exactly one output" [ "$(count_files "$T/sout")" = 1 ]

# ---- 2. N files dropped while esbd is killed again and again ----
dropper() {
    local i
    for i in $(seq -w 1 "$N"); do
        load_running || return
        printf 'file-%s %s\n' "$i" "$RANDOM$RANDOM$RANDOM" >"$T/in/f-$i.dat"
        sleep 0.01
    done
    touch "$T/dropped"
}
bg_start dropper
bg_start slow_writer crashing.txt
kills=0
while [ "$kills" -lt "$KILLS" ] || [ ! -e "$T/dropped" ]; do
    sleep "0.$((RANDOM % 6 + 2))"
    esbd_kill
    kills=$((kills + 1))
    # Accepted so far (durable on the bus): each must get its output.
    ls "$T/in/done" 2>/dev/null >>"$T/done-at-kills"
    esbd_start_tracked
done
for p in "${_bg_pids[@]}"; do wait "$p"; done
_bg_pids=()
diag "$kills SIGKILLs while $N files were dropped"
ok "esbd was killed at least $KILLS times during the drops" [ "$kills" -ge "$KILLS" ]

# The final clean run: everything must come through.
finished() {
    [ "$(count_files "$T/in/done")" -ge "$N" ] && [ -z "$(ls -A "$T/in/.esb-work")" ] &&
        [ -z "$(find "$T/in" -maxdepth 1 -type f)" ] && [ "$(count_files "$T/out")" -ge "$N" ] &&
        test -f "$T/sout/crashing.txt"
}
wait_for 300 finished
ok "clean stop" esbd_stop
seq -w 1 "$N" | sed 's/^/f-/; s/$/.dat/' >"$T/expected-names"
ls "$T/in/done" | sort >"$T/done-names"
ok "every file is in done-dir (none lost)" [ -z "$(missing_lines "$T/expected-names" "$T/done-names")" ]
ok "done-dir holds nothing else (no file placed twice)" [ "$(wc -l <"$T/done-names")" = "$N" ]
ok "nothing in error-dir" [ -z "$(ls -A "$T/in/failed" 2>/dev/null)" ]
ok "nothing left in the inbox" [ -z "$(find "$T/in" -maxdepth 1 -type f)" ]
ok "nothing left claimed in .esb-work" [ -z "$(ls -A "$T/in/.esb-work")" ]
for f in "$T"/in/done/*; do awk '{ print }' "$f"; done | sort >"$T/done-bodies"
dir_bodies "$T/out" >"$T/out-bodies"
ok "every file in done-dir has its output (same bytes)" [ -z "$(missing_lines "$T/done-bodies" "$T/out-bodies")" ]
sort -u "$T/done-at-kills" | while read -r f; do awk '{ print }' "$T/in/done/$f"; done |
    sort >"$T/done-at-kills.bodies"
ok "files already in done-dir at a kill ($(wc -l <"$T/done-at-kills.bodies")) all have their output" \
    [ -z "$(missing_lines "$T/done-at-kills.bodies" "$T/out-bodies")" ]
ok "no output that is not one of the files" [ -z "$(missing_lines "$T/out-bodies" "$T/done-bodies")" ]
dups=$(dup_count "$T/out-bodies")
diag "duplicate outputs (a file picked up twice): $dups"
ok "no file was picked up twice" [ "$dups" = 0 ]
reruns=$(grep -o 'processing [^ ]*' "$T/esbd.log" | sort | uniq -d | wc -l)
diag "messages whose route ran more than once (killed before its commit; the bus redelivers): $reruns"
diag "longest pause of the slow writers: $(cat "$T/gap.growing.txt") ms, $(cat "$T/gap.crashing.txt") ms (stable-for is 1000 ms)"
ok "slow writer under crashes: never read early" not_read_early crashing.txt
ok "slow writer under crashes: its output is the complete file" \
    eval 'cmp -s "$T/sout/crashing.txt" "$T/expect.crashing.txt" || [ "$(cat "$T/gap.crashing.txt")" -ge 1000 ]'
ok "slow writer under crashes: one output" [ "$(count_files "$T/sout")" = 2 ]
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

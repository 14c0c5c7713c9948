#!/usr/bin/env bash
# Outage of the destination (issue 5, "Must show" #2), against a real HTTP
# server (tests/tools/http-sink) on loopback:
#   a. The sink answers 503 to /out for OUTAGE seconds, then 200. MSGS
#      bodies of 16 KiB are POSTed during the outage. Every one is answered
#      202 and, after the outage, delivered (zero lost); duplicates at the
#      sink are counted (none are expected: nothing crashes). No attempt
#      comes earlier than the retry policy allows, and the attempts that no
#      open circuit breaker held back follow it within +-25 %. While the
#      breaker is open nothing is sent. esbd's RSS stays flat while the
#      backlog grows (the backlog is on disk).
#   b. Retry spacing and Retry-After on a second endpoint whose breaker a
#      steady flow of successful messages keeps closed: one message answered
#      503 four times is retried after 500, 1000, 2000, 4000 ms (+-25 %);
#      503 + Retry-After: 2 waits >= 2 s; 429 + Retry-After: 1 waits >= 1 s;
#      Retry-After: 5 beats max-delay=4s.
# Size: ESB_OUTAGE_MESSAGES (default 2000), ESB_OUTAGE_SECONDS (default 15),
# ESB_OUTAGE_BODY (bytes per body, default 16384);
# the issue's full size is `make check-outage-full` (10000 messages, 60 s).
. "$(dirname "$0")/lib.sh"
esb_setup
MSGS=${ESB_OUTAGE_MESSAGES:-2000}
OUTAGE=${ESB_OUTAGE_SECONDS:-15}
SIZE=${ESB_OUTAGE_BODY:-16384}
BREAKER_MS=30000 # http-out's default breaker-cooldown
sink_start sink
SP=$SINK_PORT
write_config <<XML
<esb xmlns="urn:esb:config:1">
  <log level="info"/>
  <bus dir="@T@/bus" fsync="always"/>
  <workers count="2"/>
  <connectors>
    <http-in id="web" listen="127.0.0.1:@PORT@" threads="16"/>
    <http-out id="sink" url="http://127.0.0.1:$SP/out/{id}"/>
    <http-out id="spacing" url="http://127.0.0.1:$SP/sp/{id}" max-in-flight="8"/>
  </connectors>
  <route id="out" from="http-in:web" path="/out">
    <to uri="http-out:sink"/>
    <retry max-attempts="1000" initial-delay="500ms" multiplier="2" max-delay="4s" jitter="0"/>
  </route>
  <route id="sp" from="http-in:web" path="/sp">
    <to uri="http-out:spacing"/>
    <retry max-attempts="10" initial-delay="500ms" multiplier="2" max-delay="4s" jitter="0"/>
  </route>
</esb>
XML
esbd_start

# rss_sampler: "MS KIB" lines in $T/rss every 200 ms while the load runs.
rss_sampler() {
    while load_running && kill -0 "$ESBD_PID" 2>/dev/null; do
        echo "$(now_ms) $(esbd_rss_kb)" >>"$T/rss"
        sleep 0.2
    done
}
# ticker: a successful message to /sp every 150 ms (keeps the breaker of
# "spacing" closed: a success resets its count of consecutive failures).
ticker() {
    local i=0
    while load_running && [ ! -e "$T/stop-ticker" ]; do
        i=$((i + 1))
        curl -s -o /dev/null --max-time 5 -X POST --data-binary "tick-$i" \
            "http://127.0.0.1:$PORT/sp"
        sleep 0.15
    done
}

# Warm up (threads, connections, allocator arenas), then the baseline RSS.
post_many /out warm 1 200 16 "$SIZE"
warm_done() { [ "$(grep -c '"status":200' "$T/sink.log")" -ge 200 ]; }
ok "warm-up: 200 messages delivered" wait_for 100 warm_done
sleep 0.5
rss0=$(esbd_rss_kb)

# ---- the outage starts ----
t_start=$(now_ms)
t_end=$((t_start + OUTAGE * 1000))
ok "sink: 503 for /out bodies during ${OUTAGE}s" \
    sink_ctl "$SP" "{\"mode\":\"503\",\"match\":\"out-\",\"until\":$t_end,\"body\":\"planned outage\"}"
ok "sink: probe-a 503 x4; probe-b 503 + Retry-After: 2 x2; probe-c 429 + Retry-After: 1; probe-d 503 + Retry-After: 5" \
    eval 'sink_ctl "$SP" "{\"mode\":\"503\",\"match\":\"probe-a\",\"count\":4,\"add\":true}" &&
          sink_ctl "$SP" "{\"mode\":\"503\",\"match\":\"probe-b\",\"count\":2,\"retry_after\":\"2\",\"add\":true}" &&
          sink_ctl "$SP" "{\"mode\":\"429\",\"match\":\"probe-c\",\"count\":1,\"retry_after\":\"1\",\"add\":true}" &&
          sink_ctl "$SP" "{\"mode\":\"503\",\"match\":\"probe-d\",\"count\":1,\"retry_after\":\"5\",\"add\":true}"'
bg_start rss_sampler
bg_start ticker
sleep 0.3
for p in a b c d; do
    [ "$(post /sp "probe-$p")" = 202 ] || diag "probe-$p not accepted"
done
post_many /out out 1 "$MSGS" 16 "$SIZE"
t_sent=$(now_ms)
rss_sent=$(esbd_rss_kb)
n202=$(awk '$1 == 202' "$T/posted.out" | wc -l)
diag "$n202 of $MSGS POSTs answered 202 in $((t_sent - t_start)) ms; outage ends after $((t_end - t_start)) ms"
ok "all $MSGS bodies accepted (202) during the outage" \
    eval '[ "$n202" = "$MSGS" ] && [ "$t_sent" -lt "$t_end" ]'

# ---- recovery: everything must arrive ----
delivered_out() {
    [ "$(grep -c '"path":"/out/[^"]*","query":"","status":200' "$T/sink.log")" -ge $((MSGS + 200)) ]
}
limit=$((OUTAGE + BREAKER_MS / 1000 + 60))
for _ in $(seq 1 "$limit"); do
    delivered_out && break
    sleep 1
done
t_done=$(now_ms)
sleep 1 # a duplicate would arrive now
touch "$T/stop-ticker"
bg_stop_all
diag "all delivered $(((t_done - t_end) / 1000)) s after the outage ended (breaker cool-down ${BREAKER_MS} ms)"

sink_tsv "$T/sink.log" >"$T/sink.tsv"
# out bodies: NAME T STATUS KEY, by name then time
awk -F'\t' -v OFS='\t' '$4 ~ /^out-/ { b = $4; sub(/\.+$/, "", b); print b, $1, $2, $3 }' \
    "$T/sink.tsv" | sort -t"$(printf '\t')" -k1,1 -k2,2n >"$T/out.att"
awk '$1 == 202 { print $3 }' "$T/posted.out" | sort -u >"$T/out.acked"
awk -F'\t' '$3 == 200 { print $1 }' "$T/out.att" | sort >"$T/out.200"
missing=$(missing_lines "$T/out.acked" "$T/out.200" | wc -l)
dups=$(dup_count "$T/out.200")
nreq=$(wc -l <"$T/out.att")
ok "zero lost: every accepted body reached the sink with a 200 ($missing missing)" [ "$missing" = 0 ]
diag "duplicates at the sink (a body answered 200 more than once): $dups"
ok "no duplicates (nothing crashed, nothing timed out)" [ "$dups" = 0 ]
early=$(awk -F'\t' -v e="$t_end" '$3 == 200 && $2 < e' "$T/out.att" | wc -l)
ok "nothing was answered 200 during the outage" [ "$early" = 0 ]
awk '$1 == 202 { print $3, $2 }' "$T/posted.out" | sort >"$T/out.ids"
badkey=$(awk -F'\t' '{ print $1, $4 }' "$T/out.att" | sort -u | join - "$T/out.ids" |
    awk '$2 != $3' | wc -l)
ok "every attempt carried Idempotency-Key = the id answered at ingest" \
    eval '[ "$badkey" = 0 ] && [ "$(awk -F"\t" "{ print \$1 }" "$T/out.att" | sort -u | wc -l)" = "$MSGS" ]'

# Breaker windows of endpoint sink: from each OPEN to the next CLOSED.
breaker_states sink >"$T/breaker"
awk '$2 == "OPEN" && !open { s = $1; open = 1 } $2 == "CLOSED" && open { print s, $1; open = 0 }
     END { if (open) print s, 9999999999999 }' "$T/breaker" >"$T/breaker.win"
nopen=$(grep -c ' OPEN$' "$T/breaker")
diag "breaker of sink: $nopen OPEN, $(grep -c ' HALF-OPEN$' "$T/breaker") probes, windows (ms from outage start): $(awk -v s="$t_start" '{ printf "%d..%d ", $1 - s, $2 - s }' "$T/breaker.win")"
ok "the circuit breaker opened during the outage and closed after it" \
    eval '[ "$nopen" -ge 1 ] && [ "$(tail -n1 "$T/breaker" | cut -d" " -f2)" = CLOSED ]'
# While open (after a 1 s grace for requests already on the wire), only the
# half-open probes may reach the sink: one request per probe.
quiet_bad=$(awk -v OFS='\t' 'NR == FNR { if ($2 == "OPEN") o[++n] = $1; if ($2 == "HALF-OPEN") h[++m] = $1; next }
    FNR == 1 { for (i = 1; i <= n; i++) { lo[i] = o[i] + 1000; hi[i] = (i <= m ? h[i] : 9999999999999) - 1 } }
    { for (i = 1; i <= n; i++) if ($2 > lo[i] && $2 < hi[i]) bad++ } END { print bad + 0 }' \
    "$T/breaker" "$T/out.att")
ok "no request reached the sink while the breaker was open" [ "$quiet_bad" = 0 ]

# Spacing: gap after the k-th failed attempt vs min(500 * 2^(k-1), 4000).
awk -F'\t' -v OFS='\t' 'NR == FNR { ws[++nw] = $1; we[nw] = $2; next }
    function expect(k) { d = 500 * 2 ^ (k - 1); return d > 4000 ? 4000 : d }
    $1 != prev { prev = $1; k = 0 }
    { k++; if (k > 1) { g = $2 - lt; e = expect(k - 1); el = 1
          for (i = 1; i <= nw; i++) if (ws[i] < $2 && we[i] > lt) el = 0
          print $1, k - 1, g, e, el }
      lt = $2 }' FS=' ' "$T/breaker.win" FS='\t' "$T/out.att" >"$T/out.gaps"
ngaps=$(wc -l <"$T/out.gaps")
nel=$(awk -F'\t' '$5 == 1' "$T/out.gaps" | wc -l)
too_early=$(awk -F'\t' '$3 < 0.75 * $4' "$T/out.gaps" | wc -l)
off=$(awk -F'\t' '$5 == 1 && ($3 < 0.75 * $4 || $3 > 1.25 * $4)' "$T/out.gaps" | wc -l)
maxatt=$(awk -F'\t' '{ c[$1]++ } END { m = 0; for (b in c) if (c[b] > m) m = c[b]; print m }' "$T/out.att")
diag "$nreq requests for $MSGS bodies (at most $maxatt attempts for one); $ngaps retries, $nel of them not held back by the breaker"
free_gaps=$(awk -F'\t' '$5 == 1 { printf "%s %d:%d/%d ", $1, $2, $3, $4 }' "$T/out.gaps" | head -c 600)
[ -z "$free_gaps" ] || diag "gaps not held back (body attempt:gap/policy ms): $free_gaps"
ok "no retry came earlier than the policy allows (-25 %): $too_early of $ngaps" [ "$too_early" = 0 ]
# Usually none: the breaker opens after the first 5 failures, so every later
# retry of /out waits for it (part b checks the policy's spacing).
if [ "$nel" -gt 0 ]; then
    ok "retries the breaker did not hold back follow the policy +-25 % ($off of $nel off)" [ "$off" = 0 ]
else
    diag "no retry of /out escaped the open breaker; the policy's spacing is checked in part b"
fi

# ---- b. spacing and Retry-After on the endpoint kept closed by the ticker ----
awk -F'\t' -v OFS='\t' '$4 ~ /^probe-/ { print $4, $1, $2 }' "$T/sink.tsv" |
    sort -t"$(printf '\t')" -k1,1 -k2,2n >"$T/probe.att"
# gaps PROBE: the gaps between its attempts (ms), space-separated
gaps() { awk -F'\t' -v p="$1" '$1 == p { if (n++) printf "%s%d", sep, $2 - lt; sep = " "; lt = $2 }' "$T/probe.att"; }
# statuses PROBE
statuses() { awk -F'\t' -v p="$1" '$1 == p { printf "%s%s", sep, $3; sep = " " }' "$T/probe.att"; }
# within G LO HI
within() { awk -v g="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(g >= lo && g <= hi) }'; }
for p in a b c d; do diag "probe-$p: answers $(statuses "probe-$p"); gaps $(gaps "probe-$p") ms"; done
ok "spacing endpoint: its breaker never opened" not log_has 'endpoint:spacing\] circuit breaker OPEN'
ok "probe-a: 503 four times, then 200" [ "$(statuses probe-a)" = "503 503 503 503 200" ]
read -r g1 g2 g3 g4 <<<"$(gaps probe-a)"
ok "probe-a: retried after 500 ms +-25 % ($g1)" within "${g1:-0}" 375 625
ok "probe-a: then 1000 ms +-25 % ($g2)" within "${g2:-0}" 750 1250
ok "probe-a: then 2000 ms +-25 % ($g3)" within "${g3:-0}" 1500 2500
ok "probe-a: then 4000 ms +-25 % ($g4)" within "${g4:-0}" 3000 5000
ok "probe-b: 503 twice, then 200" [ "$(statuses probe-b)" = "503 503 200" ]
read -r g1 g2 <<<"$(gaps probe-b)"
ok "probe-b: Retry-After: 2 honoured: >= 2000 ms, not much more ($g1, $g2)" \
    eval 'within "${g1:-0}" 2000 2500 && within "${g2:-0}" 2000 2500'
ok "probe-c: 429, then 200" [ "$(statuses probe-c)" = "429 200" ]
g1=$(gaps probe-c)
ok "probe-c: Retry-After: 1 on a 429 honoured (policy alone: 500 ms): $g1 ms" within "${g1:-0}" 1000 1250
g1=$(gaps probe-d)
ok "probe-d: Retry-After: 5 beats max-delay=4s: $g1 ms" within "${g1:-0}" 5000 6250
ok "the log says the wait came from Retry-After (retry in 2000ms for probe-b)" \
    log_has 'endpoint:spacing\] delivery failed .* HTTP 503 .*; retry in 2000ms'
nticks=$(awk -F'\t' '$4 ~ /^tick-/ && $2 == 200' "$T/sink.tsv" | wc -l)
ticks_sent=$(awk -F'\t' '$4 ~ /^tick-/' "$T/sink.tsv" | wc -l)
ok "the other messages of /sp flowed meanwhile ($nticks delivered, each once)" \
    eval '[ "$nticks" -ge 20 ] && [ "$nticks" = "$ticks_sent" ]'

# ---- memory ----
# The steady level while the backlog waits is the median of the samples
# taken between the end of the POSTs and the end of the outage. The peak
# also counts transients: bus compaction copies up to 16 MiB of live
# entries forward per pass (bus_maint.c COMPACT_MAX_BYTES), and up to
# max-in-flight (64) messages are in memory while they are delivered.
# Bodies held in memory would add at least the whole backlog to either.
read -r rss_level n_level < <(awk -v a="$t_sent" -v b="$t_end" '$1 >= a && $1 < b { print $2 }' "$T/rss" |
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] + 0, NR }')
read -r rss_peak n_all < <(awk -v a="$t_start" -v b="$t_done" '$1 >= a && $1 < b { if ($2 > m) m = $2; n++ } END { print m + 0, n + 0 }' "$T/rss")
backlog_kb=$((MSGS * SIZE / 1024))
peak_allow=$((backlog_kb / 4 + 16384 + 64 * SIZE / 1024))
diag "esbd RSS: $rss0 KiB after warm-up; $rss_sent KiB right after the POSTs; $rss_level KiB (median) while the backlog waited; peak $rss_peak KiB until all were delivered ($n_all samples)"
diag "growth: $((rss_level - rss0)) KiB steady ($(((rss_level - rss0) * 1024 / MSGS)) bytes per queued message of $SIZE), $((rss_peak - rss0)) KiB at the peak; backlog $backlog_kb KiB of bodies"
ok "RSS sampled every 200 ms while the backlog waited" [ "$n_level" -ge $(((t_end - t_sent) / 400)) ]
ok_rss "RSS flat while the backlog waits: growth < 25 % of the backlog's bytes ($((backlog_kb / 4)) KiB)" \
    [ $((rss_level - rss0)) -lt $((backlog_kb / 4)) ]
ok_rss "RSS peak through outage and recovery < 25 % of the backlog + 16 MiB compaction + 64 in flight ($peak_allow KiB)" \
    [ $((rss_peak - rss0)) -lt "$peak_allow" ]

ok "clean stop" esbd_stop
"$ESBCTL" queues --data "$T/bus" >"$T/queues.txt"
ok "nothing left queued, no dead letters" [ -z "$(awk 'NR > 1 && $2 != 0' "$T/queues.txt")" ]
done_testing

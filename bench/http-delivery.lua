-- bench/http-delivery.lua - wrk script for bench/http-delivery (end to end).
--
-- Like bench/http-ingest.lua (POST of SIZE bytes, the first script
-- argument, default 1024; Content-Type: application/octet-stream; keep-alive),
-- but every request also carries
--   X-Sent-Us: <wall clock in microseconds when the request was built>
-- taken with clock_gettime(CLOCK_REALTIME) through LuaJIT's FFI. wrk calls
-- request() for each request just before writing it to the socket, so this
-- is the send time. esbd's http-out forwards the header (forward-headers=
-- "x-sent-us") and the nginx sink logs it next to its own $msec: the
-- difference is the latency from request to sink, on one clock.
--
-- Pacing: with ESB_BENCH_PACE_MS=N in the environment (N > 0), each
-- connection waits N ms after an answer before its next request (wrk's
-- delay()), which caps the offered rate at about connections * 1000 / N per
-- second. It is read at the top level because wrk decides whether the script
-- has a delay() before init() runs. Without it there is no delay().
--
-- done() prints the same "esbbench KEY=VALUE" lines as bench/http-ingest.lua.
--
-- usage: [ESB_BENCH_PACE_MS=N] wrk -t T -c C -d S --latency -s bench/http-delivery.lua URL -- SIZE

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } esb_bench_timespec;
int clock_gettime(int clk, esb_bench_timespec *ts);
]])
local CLOCK_REALTIME = 0
local ts = ffi.new("esb_bench_timespec")
local size = 1024
local body
local headers = {}

local pace = tonumber(os.getenv("ESB_BENCH_PACE_MS") or "")
if pace and pace > 0 then
    function delay()
        return pace
    end
end

function init(args)
    if args[1] then
        size = tonumber(args[1]) or size
    end
    body = string.rep("x", size)
    headers["Content-Type"] = "application/octet-stream"
end

function request()
    ffi.C.clock_gettime(CLOCK_REALTIME, ts)
    headers["X-Sent-Us"] = string.format("%d%06d", tonumber(ts.tv_sec), math.floor(tonumber(ts.tv_nsec) / 1000))
    return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    local out = {
        requests = summary.requests,
        seconds = string.format("%.3f", secs),
        rate = string.format("%.0f", secs > 0 and summary.requests / secs or 0),
        lat_p50_us = latency:percentile(50),
        lat_p99_us = latency:percentile(99),
        lat_max_us = latency.max,
        err_connect = e.connect,
        err_read = e.read,
        err_write = e.write,
        err_timeout = e.timeout,
        err_status = e.status,
        bytes = summary.bytes,
    }
    local keys = {}
    for k in pairs(out) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        io.write(string.format("esbbench %s=%s\n", k, tostring(out[k])))
    end
end

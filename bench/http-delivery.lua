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
-- done() prints the same "esbbench KEY=VALUE" lines as bench/http-ingest.lua
-- (bench/wrk-report.lua).
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

-- done(): the shared report (bench/wrk-report.lua, next to this script).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "wrk-report.lua").done

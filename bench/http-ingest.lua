-- bench/http-ingest.lua - wrk script for bench/http-ingest.
--
-- Every request is a POST of SIZE bytes (the first script argument, default
-- 1024) with Content-Type: application/octet-stream and a Content-Length
-- (wrk sends the body in the same write as the headers). The request is
-- built once per thread; there is no per-response Lua callback, so the
-- script costs wrk nothing per request.
--
-- done() (bench/wrk-report.lua) prints the results as "esbbench KEY=VALUE"
-- lines on stdout, which bench/http-ingest reads: requests, seconds, rate,
-- lat_p50_us, lat_p99_us, lat_max_us, err_connect, err_read, err_write,
-- err_timeout, err_status, bytes (described in wrk-report.lua).
--
-- usage: wrk -t T -c C -d S --latency -s bench/http-ingest.lua URL -- SIZE

local size = 1024

function init(args)
    if args[1] then
        size = tonumber(args[1]) or size
    end
    wrk.method = "POST"
    wrk.body = string.rep("x", size)
    wrk.headers["Content-Type"] = "application/octet-stream"
end

-- done(): the shared report (bench/wrk-report.lua, next to this script).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "wrk-report.lua").done

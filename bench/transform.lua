-- bench/transform.lua - wrk script for bench/transform.
--
-- Every request is a POST of the file FILE (first script argument) with
-- Content-Type CT (second argument, default application/xml), on
-- keep-alive connections. The request is built once per thread.
--
-- done() (bench/wrk-report.lua) prints "esbbench KEY=VALUE" lines on stdout
-- for bench/transform: requests, seconds, rate, lat_p50_us, lat_p99_us,
-- err_connect, err_read, err_write, err_timeout, err_status (responses >=
-- 400); also lat_max_us and bytes, which bench/transform does not use.
--
-- usage: wrk -t T -c C -d S --latency -s bench/transform.lua URL -- FILE [CT]

function init(args)
    local f = assert(io.open(args[1], "rb"), "cannot open " .. tostring(args[1]))
    local body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.body = body
    wrk.headers["Content-Type"] = args[2] or "application/xml"
end

-- done(): the shared report (bench/wrk-report.lua, next to this script).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "wrk-report.lua").done

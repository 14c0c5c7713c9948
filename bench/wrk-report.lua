-- bench/wrk-report.lua - the done() the wrk scripts share (http-ingest.lua,
-- http-delivery.lua, transform.lua). Each loads it from its own directory:
--
--   local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
--   done = dofile(here .. "wrk-report.lua").done
--
-- done() prints the results as "esbbench KEY=VALUE" lines on stdout, sorted
-- by key, which the bench drivers read (wrk's own report has no such lines):
--   requests     responses received (any status) during the measurement
--   seconds      length of the measurement
--   rate         requests / seconds
--   lat_p50_us, lat_p99_us, lat_max_us   latency per request, microseconds
--   err_connect, err_read, err_write, err_timeout   socket errors
--   err_status   responses with a status >= 400 (wrk's "Non-2xx or 3xx")
--   bytes        response bytes read

local M = {}

function M.done(summary, latency, requests)
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

return M

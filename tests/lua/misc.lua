-- esb.log, esb.uuid, esb.time.

-- log
local out = capture_stderr(function() esb.log.info("order %s qty=%d", "A-1", 3) end)
ok(out:find(" info [lua:test-lua-modules] order A-1 qty=3", 1, true), "log.info: formats and prefixes the script name: " .. out)
out = capture_stderr(function() esb.log.warn("two\nlines\tand\1ctl") end)
ok(out:find("[lua:test-lua-modules] two\\nlines\\tand?ctl\n", 1, true), "log: one line, control characters escaped")
ok(capture_stderr(function() esb.log.error("e") end):find(" error [lua:", 1, true), "log.error")
ok(capture_stderr(function() esb.log.debug("d") end):find(" debug [lua:", 1, true), "log.debug")
ok(capture_stderr(function() esb.log.info({}) end):find("table: ", 1, true), "log: a lone non-string argument is tostring'ed")
ok(#capture_stderr(function() esb.log.info(string.rep("x", 5000)) end) < 2100, "log: long messages are cut")
ok(raises(esb.log.info, "%d", "x") ~= nil, "log: bad format arguments are an error")
ok(raises(esb.log.info) ~= nil, "log: a message is required")

-- uuid
local u1, u2 = esb.uuid.v7(), esb.uuid.v7()
ok(#u1 == 36 and u1:match("^%x+%-%x+%-7%x%x%x%-[89ab]%x%x%x%-%x+$"), "uuid.v7: version 7 text form")
ok(u1 ~= u2 and u1 < u2, "uuid.v7: unique and increasing")

-- time.now
local now = esb.time.now()
ok(math.type(now) == "integer" and now > 1700000000000, "time.now: integer ms since the epoch")

-- time.format
ok(esb.time.format(0) == "1970-01-01T00:00:00.000Z", "format: epoch")
ok(esb.time.format(1714564800123) == "2024-05-01T12:00:00.123Z", "format: ms")
ok(esb.time.format(1714564800000, 120) == "2024-05-01T14:00:00.000+02:00", "format: positive offset")
ok(esb.time.format(1714564800000, -330) == "2024-05-01T06:30:00.000-05:30", "format: negative offset")
ok(esb.time.format(-1) == "1969-12-31T23:59:59.999Z", "format: before the epoch")
ok(esb.time.format(951782400000) == "2000-02-29T00:00:00.000Z", "format: leap day")
ok(esb.time.format(1714564800000, 0, "%Y%m%d %H%M%S") == "20240501 120000", "format: custom pattern")
ok(esb.time.format(1714564800000, 60, "%d.%m.%Y %z %%") == "01.05.2024 +01:00 %", "format: %z and %%")
ok(raises(esb.time.format, 0, 0, "%Q"):find("unknown directive %Q", 1, true), "format: unknown directive refused")
ok(raises(esb.time.format, 0, 2000):find("out of range", 1, true), "format: offset range checked")
ok(raises(esb.time.format, 1e15 // 1 * 1000):find("outside the years", 1, true), "format: year range checked")
ok(raises(esb.time.format, 1.5) ~= nil, "format: ms must be an integer")

-- time.parse
ok(esb.time.parse("2024-05-01T12:00:00Z") == 1714564800000, "parse: UTC")
ok(esb.time.parse("2024-05-01T12:00:00.123Z") == 1714564800123, "parse: milliseconds")
ok(esb.time.parse("2024-05-01T12:00:00.123456789Z") == 1714564800123, "parse: nanoseconds truncated")
ok(esb.time.parse("2024-05-01T14:00:00+02:00") == 1714564800000, "parse: offset +02:00")
ok(esb.time.parse("2024-05-01T06:30:00-0530") == 1714564800000, "parse: offset -0530")
ok(esb.time.parse("2024-05-01 12:00:00z") == 1714564800000, "parse: space separator, lowercase z")
ok(esb.time.parse("2024-05-01T12:00Z") == 1714564800000, "parse: seconds optional")
ok(esb.time.parse("2024-05-01T12:00:00") == 1714564800000, "parse: no offset means UTC")
ok(esb.time.parse("2024-05-01") == 1714521600000, "parse: date only")
ok(esb.time.parse("20240501") == 1714521600000, "parse: YYYYMMDD")
ok(esb.time.parse("1969-12-31T23:59:59.999Z") == -1, "parse: before the epoch")
ok(esb.time.parse(esb.time.format(1234567890123, 90)) == 1234567890123, "parse(format(t, off)) == t")
for _, bad in ipairs({"x", "", "2024-13-01", "2024-02-30", "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z",
                      "2024-05-01T12:00:00+25:00", "2024-05-01T12:00:00Zjunk", "2024-5-1", "202405011",
                      "2024-05-01T12:00:60Z", "2024-05-01T12:00:00."}) do
  local e = raises(esb.time.parse, bad)
  ok(e and e:find("esb.time.parse: bad time '" .. bad .. "'", 1, true), "parse: refuses '" .. bad .. "'")
end

-- time.parse_format
ok(esb.time.parse_format("01/05/2024 12:00", "%d/%m/%Y %H:%M") == 1714564800000, "parse_format: day-first")
ok(esb.time.parse_format("20240501120000", "%Y%m%d%H%M%S") == 1714564800000, "parse_format: compact")
ok(esb.time.parse_format("2024-05-01 14:00 +0200", "%Y-%m-%d %H:%M %z") == 1714564800000, "parse_format: %z")
ok(esb.time.parse_format("12:00:00.5", "%H:%M:%S.%f") == 43200500, "parse_format: %f fraction, date defaults to 1970-01-01")
ok(esb.time.parse_format("100%", "100%%") == 0, "parse_format: %% literal")
local e = raises(esb.time.parse_format, "2024-05-01", "%d/%m/%Y")
ok(e and e:find("esb.time.parse_format: bad time '2024-05-01' for format '%d/%m/%Y'", 1, true), "parse_format: mismatch refused")
ok(raises(esb.time.parse_format, "31/02/2024", "%d/%m/%Y"), "parse_format: invalid date refused")
ok(raises(esb.time.parse_format, "2024", "%Y!"), "parse_format: missing literal refused")
ok(raises(esb.time.parse_format, "2024x", "%Y"), "parse_format: trailing text refused")
ok(raises(esb.time.parse_format, "x", "%q"):find("unknown directive", 1, true), "parse_format: unknown directive refused")

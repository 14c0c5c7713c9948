-- esb.fixed: fixed-width records from a field spec.
local fixed = esb.fixed

local spec = {
  {name = "acct", start = 1, len = 8},
  {name = "name", start = 9, len = 10},
  {name = "qty", start = 19, len = 5, type = "int"},
  {name = "amount", start = 24, len = 9, type = "decimal", scale = 2},
  {name = "date", start = 33, len = 8, type = "date"},
  {name = "raw", start = 9, len = 10, trim = false},
}
local line = "00012345John Smith00042-00012345" .. "20240501\r\n"
local r = fixed.parse(line, spec)
ok(r.acct == "00012345", "string field")
ok(r.name == "John Smith", "string field trimmed")
ok(r.qty == 42 and math.type(r.qty) == "integer", "int field (leading zeros)")
ok(r.amount == -123.45 and math.type(r.amount) == "float", "decimal with implied scale and sign")
ok(r.date == "2024-05-01", "date YYYYMMDD -> YYYY-MM-DD")
ok(r.raw == "John Smith", "trim=false keeps the raw slice")

local r2 = fixed.parse("  Ann     ", {{name = "n", start = 1, len = 10, trim = false}, {name = "t", start = 1, len = 10}})
ok(r2.n == "  Ann     " and r2.t == "Ann", "trim default true, false keeps spaces")
local d = fixed.parse("   12.5 00000000        ", {
  {name = "a", start = 1, len = 7, type = "decimal", scale = 2},
  {name = "z", start = 9, len = 8, type = "date"},
  {name = "blank", start = 17, len = 8, type = "int"},
})
ok(d.a == 12.5, "decimal with an explicit point ignores scale")
ok(d.z == nil and d.blank == nil, "all-zero dates and blank numbers are nil")
ok(fixed.parse("7", {{name = "x", start = 1, len = 1, type = "decimal", scale = 3}}).x == 0.007,
   "decimal: fewer digits than the scale")
ok(fixed.parse("+15", {{name = "x", start = 1, len = 3, type = "int"}}).x == 15, "int with a plus sign")
ok(fixed.parse("01/05/2024", {{name = "d", start = 1, len = 10, type = "date", format = "DD/MM/YYYY"}}).d == "2024-05-01",
   "date with a custom format")

-- errors name the field
local e = raises(fixed.parse, "12345678", {{name = "acct", start = 1, len = 10}})
ok(e and e:find("esb.fixed.parse: field acct (start 1, len 10) beyond line length 8", 1, true), "short line: " .. tostring(e))
e = raises(fixed.parse, "12a45", {{name = "qty", start = 1, len = 5, type = "int"}})
ok(e and e:find("field qty: '12a45' is not an integer", 1, true), "non-numeric int: " .. tostring(e))
e = raises(fixed.parse, "99999999999999999999", {{name = "big", start = 1, len = 20, type = "int"}})
ok(e and e:find("field big", 1, true), "int overflow refused")
e = raises(fixed.parse, "1.2.3", {{name = "amt", start = 1, len = 5, type = "decimal"}})
ok(e and e:find("field amt: '1.2.3' is not a decimal", 1, true), "bad decimal refused")
e = raises(fixed.parse, "20241301", {{name = "when", start = 1, len = 8, type = "date"}})
ok(e and e:find("field when: '20241301' is not a date in format YYYYMMDD", 1, true), "bad month refused")
ok(raises(fixed.parse, "20230229", {{name = "d", start = 1, len = 8, type = "date"}}), "Feb 29 in a non-leap year refused")
ok(fixed.parse("20240229", {{name = "d", start = 1, len = 8, type = "date"}}).d == "2024-02-29", "Feb 29 in a leap year")
e = raises(fixed.parse, "x", {{start = 1, len = 1}})
ok(e and e:find("spec field 1: name is required", 1, true), "spec without a name refused: " .. tostring(e))
e = raises(fixed.parse, "x", {{name = "a", start = 1, len = 1, type = "money"}})
ok(e and e:find("unknown type 'money'", 1, true), "unknown type refused")
ok(raises(fixed.parse, "x", {{name = "a", start = 0, len = 1}}), "start must be >= 1")
ok(raises(fixed.parse, "x", {{name = "a", start = 1}}):find("needs start and len", 1, true), "len required")
ok(raises(fixed.parse, "x", {"a"}):find("spec field 1 is not a table", 1, true), "spec entries must be tables")

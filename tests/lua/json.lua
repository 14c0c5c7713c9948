-- esb.json: decode/encode, null sentinel, array marker, limits and errors.
local json = esb.json

-- decode: every JSON type
local t = json.decode('{"i":42,"f":2.5,"s":"h\\u00e9\\n","t":true,"n":null,"a":[1,"x"],"o":{"k":"v"}}')
ok(t.i == 42 and math.type(t.i) == "integer", "decode: integers stay integers")
ok(t.f == 2.5 and math.type(t.f) == "float", "decode: floats are floats")
ok(t.s == "h\xc3\xa9\n", "decode: strings with escapes to UTF-8")
ok(t.t == true, "decode: true")
ok(t.n == json.null, "decode: null is esb.json.null")
ok(type(json.null) == "userdata", "esb.json.null is a userdata sentinel")
ok(t.a[1] == 1 and t.a[2] == "x" and #t.a == 2, "decode: arrays are 1-based tables")
ok(t.o.k == "v", "decode: nested objects")
ok(json.is_array(t.a) and not json.is_array(t.o), "decode: arrays carry the array marker")
ok(json.decode("1.0") == 1.0 and math.type(json.decode("1.0")) == "float", "decode: 1.0 is a float")
ok(json.decode('"x"') == "x" and json.decode("3") == 3 and json.decode("null") == json.null,
   "decode: any value at the top level")
ok(json.decode('"a\\u0000b"') == "a\0b", "decode: \\u0000 is kept (Lua strings hold NULs)")
ok(json.decode("-9223372036854775808") == math.mininteger, "decode: 64-bit integer range")

-- decode errors
local e = raises(json.decode, '{"a":1,"a":2}')
ok(e and e:find("esb.json.decode: duplicate object key", 1, true), "decode: duplicate keys refused: " .. tostring(e))
e = raises(json.decode, '{"a":')
ok(e and e:find("esb.json.decode:", 1, true) and e:find("line 1 column", 1, true), "decode: malformed JSON names line and column: " .. tostring(e))
e = raises(json.decode, '[1,\n2,,3]')
ok(e and e:find("line 2", 1, true), "decode: the error line is right")
e = raises(json.decode, '"\xff"')
ok(e and e:find("esb.json.decode", 1, true), "decode: invalid UTF-8 refused")
e = raises(json.decode, "")
ok(e, "decode: empty input refused")
e = raises(json.decode, string.rep("[", 65) .. string.rep("]", 65))
ok(e and e:find("nesting deeper than 64", 1, true), "decode: depth > 64 refused: " .. tostring(e))
ok(#json.decode(string.rep("[", 64) .. string.rep("]", 64)) == 1, "decode: depth 64 accepted")
ok(raises(json.decode, string.rep("[", 100000)):find("nesting deeper", 1, true),
   "decode: 100000 '[' fail cleanly")
ok(json.decode(string.rep("[", 100) .. string.rep("]", 100), {max_depth = 100}) ~= nil,
   "decode: opts.max_depth raises the limit")
ok(raises(json.decode, "[]", {max_depth = 5000}):find("max_depth", 1, true),
   "decode: opts.max_depth is capped")
ok(json.decode('["[[[[" , "{{{{"]', {max_depth = 1})[1] == "[[[[", "decode: brackets in strings do not count")
ok(raises(json.decode, "99999999999999999999"), "decode: integers beyond 64 bits are refused")
ok(raises(json.decode, {}) ~= nil, "decode: a non-string argument is an error")

-- encode
ok(json.encode({1, 2, 3}) == "[1,2,3]", "encode: a sequence is an array")
ok(json.encode({}) == "{}", "encode: an empty table is an object")
ok(json.encode(json.array({})) == "[]", "encode: an empty marked table is an array")
ok(json.encode({a = 1}) == '{"a":1}', "encode: a string-keyed table is an object")
ok(json.encode(1.0) == "1.0" and json.encode(0.1) == "0.1" and json.encode(1e300) == "1e+300",
   "encode: floats stay floats, shortest round-trip text")
ok(json.encode(math.maxinteger) == "9223372036854775807", "encode: integers exact")
ok(json.encode("a\"b\\c\n\1/") == '"a\\"b\\\\c\\n\\u0001/"', "encode: string escapes")
ok(json.encode("h\xc3\xa9") == '"h\xc3\xa9"', "encode: UTF-8 passes through")
ok(json.encode(json.null) == "null" and json.encode(nil) == "null", "encode: null")
ok(json.encode(true) == "true" and json.encode(false) == "false", "encode: booleans")
ok(json.encode({b = 1, a = {2, 3}, c = "x"}, {sort_keys = true}) == '{"a":[2,3],"b":1,"c":"x"}',
   "encode: sort_keys gives a stable order")
ok(json.encode({a = {1, {b = 2}}, c = {}}, {sort_keys = true, pretty = true}) ==
   '{\n  "a": [\n    1,\n    {\n      "b": 2\n    }\n  ],\n  "c": {}\n}', "encode: pretty indents by 2")
local arr = json.decode("[1,2]")
table.remove(arr); table.remove(arr)
ok(json.encode(arr) == "[]", "encode: a decoded array emptied stays an array")
local doc = '{"a":[1,2.5,{"b":null}],"c":"x","d":{}}'
ok(json.encode(json.decode(doc), {sort_keys = true}) == doc, "encode(decode(x)) round-trips")

-- encode errors
e = raises(json.encode, 0 / 0)
ok(e and e:find("NaN", 1, true), "encode: NaN refused")
ok(raises(json.encode, math.huge), "encode: infinity refused")
local cyc = {}; cyc.self = cyc
e = raises(json.encode, cyc)
ok(e and e:find("cycle", 1, true), "encode: cycles refused: " .. tostring(e))
e = raises(json.encode, {[1] = "a", x = "b"})
ok(e and e:find("keys must be strings", 1, true), "encode: mixed keys refused")
ok(raises(json.encode, {[1] = "a", [3] = "c"}), "encode: sparse arrays refused")
ok(raises(json.encode, {[true] = 1}), "encode: boolean keys refused")
e = raises(json.encode, {f = print})
ok(e and e:find("cannot encode a function", 1, true), "encode: functions refused")
e = raises(json.encode, "\xff")
ok(e and e:find("UTF-8", 1, true), "encode: invalid UTF-8 refused")
local deep = {}
for _ = 1, 70 do deep = {deep} end
ok(raises(json.encode, deep):find("nesting deeper than 64", 1, true), "encode: depth limit")
ok(raises(json.encode, {}, {pretty = "yes"}):find("opts.pretty must be a boolean", 1, true),
   "encode: option types checked")

-- array marker
local a = json.array({})
ok(json.is_array(a), "array(): marks the table")
ok(getmetatable(a) == "esb.json.array", "array(): the marker metatable is protected")
ok(raises(setmetatable, a, {}) ~= nil, "array(): scripts cannot change the marker")
ok(raises(json.array, setmetatable({}, {})):find("already has a metatable", 1, true),
   "array(): refuses a table with another metatable")
ok(json.array(a) == a, "array(): idempotent")

-- Floats are written as the shortest of %.15g, %.16g, %.17g that reads
-- back to the same double (decimals such as prices take a faster path
-- that must print the same text).
local function reference(x)
  local s
  for prec = 15, 17 do
    s = string.format("%." .. prec .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[.eE]") then s = s .. ".0" end
  return s
end
local seed, bad, checked = 12345, nil, 0
local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
local values = {0.1, 0.2, 0.3, 0.1 + 0.2, 12.5, 41.25, 248.75, -0.5, 1e-4, 0.0001234, 1e-5, 999999999.5,
  123456789.123456, 1234567.1234567, 2 ^ -20, 1 / 3, -1 / 3, 5e-324, 1.7976931348623157e308}
for _ = 1, 20000 do
  local places = rnd(8)
  local v = (rnd(2000000000) - 1000000000) / 10 ^ places + (rnd(3) == 0 and rnd(1000) / 7 or 0)
  if math.type(v) == "float" and v ~= math.floor(v) then values[#values + 1] = v end
end
for _, v in ipairs(values) do
  if v ~= math.floor(v) then
    checked = checked + 1
    local got, want = json.encode(v), reference(v)
    if got ~= want and not bad then bad = string.format("%.17g: %s, want %s", v, got, want) end
  end
end
ok(bad == nil and checked > 15000, "encode: floats print as the shortest round-tripping %.15g..17g text (" ..
  checked .. " values)" .. (bad and (": " .. bad) or ""))

-- esb.num: strict integers and decimals from text.
local num = esb.num

-- int: an optional sign and decimal digits, the whole 64-bit range
ok(num.int("42") == 42 and math.type(num.int("42")) == "integer", "int: digits")
ok(num.int("-7") == -7 and num.int("+7") == 7 and num.int("007") == 7, "int: sign and leading zeros")
ok(num.int("9223372036854775807") == math.maxinteger, "int: the largest integer")
ok(num.int("-9223372036854775808") == math.mininteger, "int: the smallest integer")
for _, big in ipairs({"9223372036854775808", "-9223372036854775809", "99999999999999999999999"}) do
  local v, why = num.int(big)
  ok(v == nil and why == "out of range", "int: " .. big .. " is out of range (" .. tostring(why) .. ")")
end
for _, bad in ipairs({"+", "-", "1 2", "1.0", "1e3", "0x10", "1_000", "١", "1\0", "inf", "nan",
                      "99999999999999999999x", "\1 1", {}, true}) do
  local v, why = num.int(bad)
  ok(v == nil and why == "not an integer", ("int: %q is not an integer"):format(tostring(bad)))
end
ok(num.int(" 1") == 1 and num.int("7 ") == 7 and num.int("\t\r\n-3\v\f ") == -3, "int: blanks around are ignored")
for _, empty in ipairs({"", " ", "\t\n", false}) do
  local v, why = num.int(empty or nil)
  ok(v == nil and why == "empty", ("int: %q is empty"):format(tostring(empty or nil)))
end
ok(num.int(12) == 12 and num.int(12.0) == nil, "int: a Lua number argument is read as its text")

-- decimal: [+-]digits[.digits] or [+-].digits, always a float
ok(num.decimal("12.50") == 12.5 and math.type(num.decimal("12.50")) == "float", "decimal: a float")
ok(num.decimal("3") == 3.0 and math.type(num.decimal("3")) == "float", "decimal: an integer text gives a float")
ok(num.decimal("-0.25") == -0.25 and num.decimal("+.5") == 0.5 and num.decimal("1.") == 1.0, "decimal: signs, .5, 1.")
for _, bad in ipairs({".", "+.", "-", "1.2.3", "1e5", "0x1p4", "1 .5", "1,5", "inf", "nan", "1.5\0", {}}) do
  local v, why = num.decimal(bad)
  ok(v == nil and why == "not a decimal number", ("decimal: %q is refused"):format(tostring(bad)))
end
ok(num.decimal(" 1.5") == 1.5 and num.decimal("2.5\n") == 2.5, "decimal: blanks around are ignored")
ok(select(2, num.decimal("  ")) == "empty" and select(2, num.decimal(nil)) == "empty", "decimal: blank and nil are empty")
local v, why = num.decimal(string.rep("9", 400))
ok(v == nil and why == "out of range", "decimal: 400 digits overflow a double: out of range")
ok(num.decimal("0." .. string.rep("0", 400) .. "1") == 0.0, "decimal: underflow is 0, as with tonumber")

-- the same values as Lua's own tonumber wherever the syntax is allowed
local agree = 0
for _, s in ipairs({"0", "-0", "1", "10", "0.1", "0.2", "0.30000000000000004", "123456789.987654321",
                    "4503599627370497", "9007199254740993", "1.7976931348623157", "2.2250738585072014",
                    "-98765.4321", "00012.5000", ".000001", "314159265358979323846264338327950288"}) do
  ok(num.decimal(s) == tonumber(s) + 0.0, "decimal " .. s .. " == tonumber")
  local i = math.tointeger(tonumber(s))
  if s:find("^[+-]?%d+$") and i then
    ok(num.int(s) == i, "int " .. s .. " == tonumber")
    agree = agree + 1
  end
end
ok(agree >= 5, "int compared with tonumber on the integer samples")

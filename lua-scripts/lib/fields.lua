-- lib/fields.lua - checked conversions of legacy field text, shared by the
-- shipped transforms. Every failure raises an error that names the script
-- and the field, so a dead-lettered message says what was wrong with it:
--   legacy_order_xml: field 'Line[2]/Quantity': '1O' is not an integer
--
--   local f = require("lib.fields").new("my_script")
--   f:req(text, "name")  f:opt(text)  f:num(text, "name")  f:int(text, "name")
--   f:time(text, "name")  f.cents(x)
-- num, int and time answer nil for absent or blank text; req_num, req_int
-- and req_time raise "is missing or empty" instead (one call, not two).
-- Every "name" may be followed by a prefix for the error message only
-- (f:int(q, "Quantity", "Line[2]/")): no string is built unless it fails.
local M = {}
M.__index = M
local byte, format, match = string.byte, string.format, string.match
local error, pairs, pcall, setmetatable, tostring, type = error, pairs, pcall, setmetatable, tostring, type
local floor = math.floor
local int, decimal = esb.num.int, esb.num.decimal -- strict: no hex, exponents, inf or nan
local time_parse, time_format = esb.time.parse, esb.time.format

-- A converter whose errors name the script `who`.
function M.new(who)
  local o = {who = who}
  for k, v in pairs(M) do -- the methods in the object itself: no __index hop per call
    if type(v) == "function" and k ~= "new" then o[k] = v end
  end
  return setmetatable(o, M)
end

function M:fail(what, fmt, ...)
  error(format("%s: field '%s': " .. fmt, self.who, what, ...), 0)
end

-- fail with the field name pre .. what (pre optional).
local function fail(self, pre, what, fmt, ...)
  self:fail((pre or "") .. what, fmt, ...)
end

-- Trimmed text, or nil when v is nil or only blanks. (The methods call
-- each other through locals, not self: one table lookup less per call.)
local function opt(_, v)
  if v == nil then return nil end
  if type(v) ~= "string" then v = tostring(v) end
  local a, z = byte(v, 1), byte(v, -1)
  if a and a > 32 and z > 32 then return v end -- the usual case: nothing to trim
  return match(v, "^%s*(.*%S)") -- nil when blank
end
M.opt = opt

-- Trimmed text that must be present.
local function req(self, v, what, pre)
  local s = opt(self, v)
  if s == nil then fail(self, pre, what, "is missing or empty") end
  return s
end
M.req = req

-- Numbers: esb.num converts (ignoring blanks around the text) and answers
-- nil, "empty" for absent or blank text; the error path alone trims.
local function number(conv, bad)
  local function failed(self, v, why, what, pre, required)
    if why == "empty" then
      if required then fail(self, pre, what, "is missing or empty") end
      return nil
    end
    fail(self, pre, what, why == "out of range" and "'%s' is out of range" or bad, opt(self, v))
  end
  return function(self, v, what, pre)
    local n, why = conv(v)
    if n ~= nil then return n end
    return failed(self, v, why, what, pre, false)
  end, function(self, v, what, pre)
    local n, why = conv(v)
    if n ~= nil then return n end
    return failed(self, v, why, what, pre, true)
  end
end

-- A decimal number written with a '.' (no thousands separators) as a float.
M.num, M.req_num = number(decimal, "'%s' is not a number")
-- An integer (optional sign, leading zeros fine).
M.int, M.req_int = number(int, "'%s' is not an integer")

-- An ISO 8601 date or date-time (no offset = UTC) as RFC 3339 UTC with
-- milliseconds, e.g. "2024-05-01T07:30:00.000Z".
function M:time(v, what, pre)
  local s = opt(self, v)
  if s == nil then return nil end
  local good, ms = pcall(time_parse, s)
  if not good then fail(self, pre, what, "'%s' is not an ISO 8601 date or time", s) end
  return time_format(ms)
end

function M:req_time(v, what, pre)
  return self:time(req(self, v, what, pre), what, pre)
end

-- A money amount rounded to cents (sums of floats such as 0.1 + 0.2).
function M.cents(x)
  if x == nil then return nil end
  if x < 0 then return -M.cents(-x) end
  return floor(x * 100 + 0.5) / 100
end

return M

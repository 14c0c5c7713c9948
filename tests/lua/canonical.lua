-- esb.canonical: CloudEvents 1.0 structured events.
local ce = esb.canonical

local ev = ce.event{type = "com.example.order.created", source = "/legacy/erp",
                    data = {order = "A-1", qty = 2}}
ok(ev.specversion == "1.0", "event: specversion 1.0")
ok(ev.type == "com.example.order.created" and ev.source == "/legacy/erp", "event: type and source")
ok(#ev.id == 36 and ev.id:sub(15, 15) == "7", "event: default id is a new UUIDv7")
ok(math.abs(esb.time.parse(ev.time) - esb.time.now()) < 60000, "event: default time is now (RFC 3339)")
ok(ev.datacontenttype == "application/json", "event: default datacontenttype")
ok(ev.data.order == "A-1", "event: data kept as given")

local ev2 = ce.event{type = "t", source = "s", id = "42", time = 1714564800000, subject = "A-1",
                     extensions = {correlationid = "c-9", traceparent = "00-abc-def-01", priority = 3}}
ok(ev2.id == "42" and ev2.time == "2024-05-01T12:00:00.000Z" and ev2.subject == "A-1",
   "event: id, time (ms -> RFC 3339), subject")
ok(ev2.correlationid == "c-9" and ev2.priority == 3 and ev2.extensions == nil,
   "event: extensions become top-level attributes")
ok(ce.event{type = "t", source = "s", time = "2024-05-01T14:00:00+02:00"}.time == "2024-05-01T14:00:00+02:00",
   "event: a time string is kept as given")

local e = raises(ce.event, {source = "s"})
ok(e and e:find("esb.canonical.event: type is required", 1, true), "event: type required: " .. tostring(e))
ok(raises(ce.event, {type = "t"}):find("source is required", 1, true), "event: source required")
ok(raises(ce.event, {type = "", source = "s"}):find("non-empty", 1, true), "event: empty type refused")
ok(raises(ce.event, {type = "t", source = "s", sorce = 1}):find("unknown attribute 'sorce'", 1, true),
   "event: unknown attributes refused (typos)")
ok(raises(ce.event, {type = "t", source = "s", extensions = {BadName = "x"}}):find("lowercase", 1, true),
   "event: extension names must be lowercase alphanumerics")
ok(raises(ce.event, {type = "t", source = "s", extensions = {x = {}}}):find("string, an integer or a boolean", 1, true),
   "event: extension values must be simple")
ok(raises(ce.event, {type = "t", source = "s", extensions = {id = "x"}}):find("not an extension", 1, true),
   "event: standard attributes cannot be extensions")
ok(raises(ce.event, {type = "t", source = "s", time = "yesterday"}):find("RFC 3339", 1, true), "event: bad time refused")

-- encode: stable key order
local fixed_ev = ce.event{type = "com.example.t", source = "/src", id = "1", time = "2024-05-01T12:00:00Z",
                          subject = "sub", data = {z = 1, a = {"x", esb.json.null}},
                          extensions = {traceparent = "tp", correlationid = "c"}}
local want = '{"specversion":"1.0","id":"1","source":"/src","type":"com.example.t","subject":"sub",' ..
  '"time":"2024-05-01T12:00:00Z","datacontenttype":"application/json","correlationid":"c",' ..
  '"traceparent":"tp","data":{"a":["x",null],"z":1}}'
ok(ce.encode(fixed_ev) == want, "encode: attributes in the stable order, extensions sorted, data keys sorted")
ok(ce.encode(esb.json.decode(want)) == want, "encode(json.decode(x)) == x")
local nodata = ce.event{type = "t", source = "s", id = "1", time = "2024-05-01T12:00:00Z"}
ok(not ce.encode(nodata):find('"data"', 1, true), "encode: no data, no data member")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s"}):find("type is required", 1, true),
   "encode: required attributes checked")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s", type = "t", time = "noon"}):find("not an RFC 3339 time", 1, true),
   "encode: time checked")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s", type = "t", ext = 1.5}):find("extension 'ext'", 1, true),
   "encode: float extensions refused")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s", type = "t", subject = 5}):find("subject must be a string", 1, true),
   "encode: attribute types checked")

-- from_msg
local msg = {id = "0190b2c4-0000-7000-8000-000000000001", content_type = "application/json; charset=utf-8",
             body = '{"order":"A-1"}', headers = {["correlation-id"] = "corr-1", traceparent = "00-t-p-01"}}
local fm = ce.from_msg(msg, {type = "com.example.order", source = "/http"})
ok(fm.id == msg.id, "from_msg: id from msg.id")
ok(fm.correlationid == "corr-1" and fm.traceparent == "00-t-p-01", "from_msg: correlation and trace headers as extensions")
ok(fm.data.order == "A-1" and fm.datacontenttype == "application/json", "from_msg: a JSON body is decoded into data")
local fx = ce.from_msg({id = "m1", content_type = "application/xml", body = "<a/>", headers = {}},
                       {type = "t", source = "s"})
ok(fx.data == "<a/>" and fx.datacontenttype == "application/xml", "from_msg: other bodies are string data with their type")
local fo = ce.from_msg(msg, {type = "t", source = "s", id = "own", data = {x = 1}, extensions = {correlationid = "mine"}})
ok(fo.id == "own" and fo.data.x == 1 and fo.correlationid == "mine", "from_msg: explicit attributes win")
ok(ce.from_msg({body = "b"}, {type = "t", source = "s"}).datacontenttype == "application/octet-stream",
   "from_msg: no content type -> application/octet-stream")
ok(#ce.from_msg({body = "x"}, {type = "t", source = "s"}).id == 36, "from_msg: no msg.id -> new UUID")
e = raises(ce.from_msg, {content_type = "application/json", body = "{bad"}, {type = "t", source = "s"})
ok(e and e:find("esb.canonical.from_msg:", 1, true), "from_msg: malformed JSON body is an error: " .. tostring(e))
ok(raises(ce.from_msg, {content_type = "text/plain"}, {type = "t", source = "s"}):find("msg.body", 1, true),
   "from_msg: a body is required")

-- to_msg and decode
local m = ce.to_msg(fixed_ev)
ok(m.body == want and m.content_type == "application/cloudevents+json" and type(m.headers) == "table",
   "to_msg: a new message with the encoded event")
local orig = {id = "x", headers = {a = "1"}, body = "old"}
ok(ce.to_msg(fixed_ev, orig) == orig and orig.body == want and orig.headers.a == "1", "to_msg: fills a given message")
local dec = ce.decode(want)
ok(dec.id == "1" and dec.data.z == 1 and dec.correlationid == "c", "decode: a structured event")
ok(raises(ce.decode, '{"id":"1"}'):find("not a CloudEvent", 1, true), "decode: missing attributes refused")
ok(raises(ce.decode, '[1]'):find("not a CloudEvent", 1, true), "decode: non-objects refused")
ok(raises(ce.decode, '{'):find("esb.canonical.decode", 1, true), "decode: malformed JSON refused")

local wide = {specversion = "1.0", id = "1", source = "s", type = "t"}
for i = 1, 50000 do wide["x" .. i] = i end
local t0 = os.clock()
local wj = ce.encode(wide)
ok(wj:find('"type":"t","x1":1,"x10":10,"x100":100,', 1, true) and os.clock() - t0 < 5,
   "encode: 50000 extensions sorted in n log n")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s", type = "t", ["ab\0c"] = "x"}):find("NUL", 1, true),
   "encode: attribute names with NUL refused")
ok(raises(ce.encode, {specversion = "1.0", id = "1", source = "s", type = "t", ["id\0x"] = "x"}):find("NUL", 1, true),
   "encode: a standard name followed by NUL refused, not dropped")

-- message(msg, attrs) == to_msg(from_msg(msg, attrs), {id=, headers=})
local cases = {
  {{id = "m1", content_type = "application/json", body = '{"b":2,"a":[1,2.5]}',
    headers = {["correlation-id"] = "c", traceparent = "00-a-b-01"}},
   {type = "t", source = "/s", time = "2024-05-01T12:00:00+02:00", subject = "x"}},
  {{id = "m2", content_type = "text/csv", body = "a,b", headers = {}},
   {type = "t", source = "/s", time = 0, id = "own", extensions = {zz = 1, aa = true}}},
  {{id = "m3", body = "raw", headers = {}},
   {type = "t", source = "/s", time = "2024-05-01T00:00:00Z", data = {n = 1}, dataschema = "urn:x"}},
  -- data given, no extensions table: message() encodes these directly
  {{id = "m4", body = "x", headers = {["correlation-id"] = "c-1", traceparent = "00-a-b-01", tracestate = "k=v"}},
   {type = "t", source = "/s", time = 1714564800123, data = {z = {1, 2}, a = "\"q\"\n", m = esb.json.null}}},
  {{id = "m5", body = "x", headers = {tracestate = "only", ["correlation-id"] = 7}},
   {type = "t", source = "/s", time = "2024-05-01T12:00:00.5+02:00", data = "text", subject = "s",
    datacontenttype = "text/plain", dataschema = "urn:s", id = "own"}},
  {{id = 42, body = "x"}, {type = "t", source = "/s", id = "given", time = 0, data = 1.5}},
  {{id = "m7", body = "x", headers = "not a table"}, {type = "t", source = "/s", time = 0, data = false}},
  {{id = "m8", body = "x", headers = {}}, setmetatable({type = "t", source = "/s", time = 0, data = {}},
   {__index = {subject = "not seen: attributes are read raw"}})},
}
for i, c in ipairs(cases) do
  local got = ce.message(c[1], c[2])
  local want = ce.to_msg(ce.from_msg(c[1], c[2]), {id = c[1].id, headers = c[1].headers})
  ok(got.body == want.body and got.id == want.id and got.headers == want.headers and
     got.content_type == want.content_type,
     "message: the same as to_msg(from_msg(...)), case " .. i .. ": " .. got.body)
end
-- the direct path refuses what from_msg + encode refuse, with the same words
local m0 = {id = "m", body = "b", headers = {}}
for i, bad in ipairs({
  {source = "/s", data = 1}, {type = "t", data = 1}, {type = "", source = "/s", data = 1},
  {type = "t", source = "/s", data = 1, bogus = 1}, {type = "t", source = "/s", data = 1, [5] = 1},
  {type = "t", source = "/s", data = 1, id = 5}, {type = "t", source = "/s", data = 1, id = ""},
  {type = "t", source = "/s", data = 1, subject = 1}, {type = "t", source = "/s", data = 1, time = "yesterday"},
  {type = "t", source = "/s", data = 1, time = 1.5}, {type = "t", source = "/s", data = 1, time = 2^62 // 1},
  {type = "t", source = "/s", data = 1, datacontenttype = {}}, {type = "t", source = "/s", data = 1, dataschema = 0},
  {type = "t", source = "/s", data = {f = print}}, {type = "t", source = "/s", data = "\xff"},
}) do
  local got = raises(ce.message, m0, bad)
  local want = raises(function() return ce.to_msg(ce.from_msg(m0, bad)) end)
  ok(got and want and got:gsub("^.-esb%.canonical%.[%w_]+", "") == want:gsub("^.-esb%.canonical%.[%w_]+", ""),
     "message: refuses bad case " .. i .. " like from_msg: " .. tostring(got))
end
local noid = ce.message({body = "x"}, {type = "t", source = "/s", time = 0, data = 1})
ok(esb.json.decode(noid.body).id:find("^%x+%-%x+%-7%x+%-"), "message: no id anywhere: a new UUIDv7")
ok(raises(ce.message, {id = "m", body = "b", headers = {}}, {source = "/s"}):find(
   "esb.canonical.message: type is required", 1, true), "message: a missing type is an error naming message")
ok(raises(ce.message, {id = "m", body = "b", headers = {}}, {type = "t", source = "/s", extensions = {["Bad"] = 1}}):find(
   "extension name 'Bad'", 1, true), "message: bad extension names are refused")
ok(raises(ce.message, {id = "m", body = "b", headers = {}}, {type = "t", source = "/s", time = "yesterday"}):find(
   "time must be", 1, true), "message: a bad time is refused")

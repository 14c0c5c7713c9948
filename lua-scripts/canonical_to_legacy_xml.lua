-- canonical_to_legacy_xml.lua - the way back: a canonical order event
-- (type com.acme.order.created, docs/canonical.md) -> the legacy ERP's
-- purchase order XML (namespace urn:acme:po:1, the shape
-- legacy_order_xml.lua reads).
--
-- The body must be a CloudEvents structured event (JSON) of that type;
-- anything else is an error (dead-lettered). Output: content type
-- application/xml, an XML declaration, elements indented; orderDate in UTC
-- (2024-05-01T07:30:00Z), prices and the total with two decimals; a
-- customer without a name gets no <Name>. The event id travels in the
-- header x-event-id (the legacy format has no place for it).
local WHO = "canonical_to_legacy_xml"
local PO = "urn:acme:po:1"
local f = require("lib.fields").new(WHO)

local function el(name, children, attrs)
  return {name = name, attrs = attrs or {}, children = children or {}}
end

local function money(x, what)
  if math.type(x) == nil then f:fail(what, "must be a number (got %s)", type(x)) end
  return string.format("%.2f", x)
end

local function str(x, what)
  if type(x) ~= "string" or x == "" then f:fail(what, "must be a non-empty string") end
  return x
end

function transform(msg)
  local good, ev = pcall(esb.canonical.decode, msg.body)
  if not good then error(WHO .. ": the body is not a canonical event: " .. ev, 0) end
  if ev.type ~= "com.acme.order.created" then
    error(string.format("%s: event type '%s' is not com.acme.order.created", WHO, ev.type), 0)
  end
  local d = ev.data
  if type(d) ~= "table" then error(WHO .. ": the event has no data object", 0) end
  local cust = d.customer
  if type(cust) ~= "table" then f:fail("data.customer", "must be an object") end
  if type(d.lines) ~= "table" or #d.lines == 0 then f:fail("data.lines", "must be a non-empty array") end

  local customer = el("Customer", {}, {id = str(cust.id, "data.customer.id")})
  if cust.name ~= nil and cust.name ~= esb.json.null then
    customer.children[1] = el("Name", {str(cust.name, "data.customer.name")})
  end
  local lines = el("Lines")
  for i, l in ipairs(d.lines) do
    local where = string.format("data.lines[%d].", i)
    if type(l) ~= "table" then f:fail("data.lines[" .. i .. "]", "must be an object") end
    if math.type(l.qty) ~= "integer" then f:fail(where .. "qty", "must be an integer") end
    lines.children[i] = el("Line", {
      el("Sku", {str(l.sku, where .. "sku")}),
      el("Quantity", {tostring(l.qty)}),
      el("UnitPrice", {money(l.unit_price, where .. "unit_price")}),
    }, {number = tostring(i)})
  end
  local when = esb.time.parse(str(d.ordered_at, "data.ordered_at"))
  local root = el("PurchaseOrder", {
    customer,
    el("Currency", {str(d.currency, "data.currency")}),
    lines,
    el("Total", {money(d.total, "data.total")}),
  }, {
    orderNumber = str(d.order_id, "data.order_id"),
    orderDate = esb.time.format(when, 0, "%Y-%m-%dT%H:%M:%SZ"),
  })
  root.ns = PO
  msg.body = esb.xml.serialize(root, {declaration = true, pretty = true})
  msg.content_type = "application/xml"
  msg.headers["x-event-id"] = ev.id
  return msg
end

-- legacy_order_xml.lua - a legacy ERP purchase order (XML in the namespace
-- urn:acme:po:1, bare or wrapped in a SOAP 1.1 envelope) -> the canonical
-- order: a CloudEvents 1.0 structured event (docs/canonical.md).
--
-- Input (any namespace prefix; the SOAP variant carries the same element
-- as the only child of soap:Body):
--   <PurchaseOrder xmlns="urn:acme:po:1" orderNumber="PO-1" orderDate="2024-05-01T09:30:00+02:00">
--     <Customer id="C-1"><Name>Ann</Name></Customer>     Name optional
--     <Currency>EUR</Currency>
--     <Lines><Line><Sku>A</Sku><Quantity>2</Quantity><UnitPrice>9.50</UnitPrice></Line>...</Lines>
--     <Total>19.00</Total>                                optional: sum of the lines
--   </PurchaseOrder>
-- Output event: type com.acme.order.created, source /legacy/erp, subject =
-- the order number, time = the order date, id = the message id, data =
--   {order_id, customer = {id, name?}, currency, total, lines = [{sku, qty,
--    unit_price}], ordered_at}
-- (ordered_at and time in UTC, RFC 3339 with milliseconds). Anything
-- missing or malformed is an error naming the field: the message is
-- dead-lettered with it.
local canon = require "lib.canon"
local xmlx = require "lib.xmlx"

local WHO = "legacy_order_xml"
local PO = "urn:acme:po:1"
local f = require("lib.fields").new(WHO)
local error, format, ipairs = error, string.format, ipairs
local parse, array, index, texts, text = esb.xml.parse, esb.json.array, xmlx.index, xmlx.texts, xmlx.text

-- The text of element e, or nil.
local function text_of(e)
  if e == nil then return nil end
  return text(e)
end

local function line_of(e, i)
  local t = texts(e, PO)
  local where = format("Line[%d]/", i)
  return {
    sku = f:req(t.Sku, "Sku", where),
    qty = f:req_int(t.Quantity, "Quantity", where),
    unit_price = f:req_num(t.UnitPrice, "UnitPrice", where),
  }
end

function transform(msg)
  local po = xmlx.payload(parse(msg.body), WHO)
  if not xmlx.is(po, "PurchaseOrder", PO) then
    error(format("%s: not a purchase order: the document is <%s> in namespace '%s', " ..
      "expected <PurchaseOrder> in '%s'", WHO, po.name, po.ns or "", PO), 0)
  end
  local k = index(po, PO)
  local cust = k.Customer
  if cust == nil then error(WHO .. ": field 'Customer' is missing", 0) end
  local lines = {}
  local sum = 0.0
  for _, e in ipairs(k.Lines and k.Lines.children or {}) do
    if xmlx.is(e, "Line", PO) then
      local l = line_of(e, #lines + 1)
      lines[#lines + 1] = l
      sum = sum + l.qty * l.unit_price
    end
  end
  if #lines == 0 then error(WHO .. ": field 'Lines' holds no Line", 0) end

  local ordered_at = f:req_time(po.attrs.orderDate, "@orderDate")
  local order_id = f:req(po.attrs.orderNumber, "@orderNumber")
  local data = {
    order_id = order_id,
    customer = {
      id = f:req(cust.attrs.id, "Customer/@id"),
      name = f:opt(texts(cust, PO).Name),
    },
    currency = f:req(text_of(k.Currency), "Currency"),
    total = f:num(text_of(k.Total), "Total") or f.cents(sum),
    lines = array(lines),
    ordered_at = ordered_at,
  }
  return canon.message(msg, {
    type = "com.acme.order.created",
    source = "/legacy/erp",
    subject = order_id,
    time = ordered_at,
    data = data,
  })
end

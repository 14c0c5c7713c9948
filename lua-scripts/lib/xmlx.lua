-- lib/xmlx.lua - small helpers over esb.xml node tables (docs/lua-api.md):
-- namespace-aware child lookup and SOAP 1.1 envelope unwrapping.
local M = {}
local ipairs, type, xml_text = ipairs, type, esb.xml.text

M.SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"

-- Does element e have local name `name` and namespace `ns`? (ns nil: any.)
local function is(e, name, ns)
  return type(e) == "table" and e.name == name and (ns == nil or e.ns == ns)
end
M.is = is

-- The first child element of e named name (in ns), or nil.
function M.child(e, name, ns)
  for _, c in ipairs(e.children) do
    if is(c, name, ns) then return c end
  end
  return nil
end

-- Every child element of e named name (in ns), in document order.
function M.children(e, name, ns)
  local list = {}
  for _, c in ipairs(e.children) do
    if is(c, name, ns) then list[#list + 1] = c end
  end
  return list
end

-- The text of element e (all its descendants' text).
local function text(e)
  local k = e.children
  if #k == 1 and type(k[1]) == "string" then return k[1] end -- the usual case, no C call
  if #k == 0 then return "" end
  return xml_text(e)
end
M.text = text

-- The text of the first child element named name (in ns), or nil.
function M.child_text(e, name, ns)
  local c = M.child(e, name, ns)
  if c == nil then return nil end
  return text(c)
end

-- The child elements of e in namespace ns by local name (the first of each
-- name), for elements read field by field: one pass instead of one per field.
M.index = esb.xml.index
-- The same, with the text of each element instead of the element (a record's
-- leaf fields in one call).
M.texts = esb.xml.texts

-- The only child element of e (text between elements is ignored), or nil
-- and a reason.
local function only_element(e)
  local found
  for _, c in ipairs(e.children) do
    if type(c) == "table" then
      if found then return nil, "more than one element" end
      found = c
    end
  end
  if not found then return nil, "no element" end
  return found
end

-- The payload element of a document: the root itself, or, for a SOAP 1.1
-- envelope, the one element in soap:Body. A SOAP Fault is an error with its
-- faultcode and faultstring.
function M.payload(root, who)
  if not is(root, "Envelope", M.SOAP11) then return root, false end
  local body = M.child(root, "Body", M.SOAP11)
  if body == nil then error(who .. ": SOAP envelope without a Body", 0) end
  local p, why = only_element(body)
  if p == nil then error(who .. ": SOAP Body holds " .. why, 0) end
  if is(p, "Fault", M.SOAP11) then
    error(string.format("%s: SOAP Fault %s: %s", who, M.child_text(p, "faultcode") or "?",
      M.child_text(p, "faultstring") or "?"), 0)
  end
  return p, true
end

return M

-- esb.csv: RFC 4180 parse/parse_line/format, options, errors.
local csv = esb.csv

local rows = csv.parse('a,b,c\r\n1,"x,y","say ""hi"""\r\n2,"multi\nline",\r\n')
ok(#rows == 3, "parse: three records")
ok(rows[1][1] == "a" and rows[1][3] == "c", "parse: plain fields")
ok(rows[2][2] == "x,y" and rows[2][3] == 'say "hi"', "parse: quoted delimiter and doubled quotes")
ok(rows[3][2] == "multi\nline" and rows[3][3] == "" and #rows[3] == 3, "parse: newline in quotes, trailing empty field")
ok(#csv.parse("a\nb\n") == 2 and #csv.parse("a\rb") == 2, "parse: LF and CR line ends")
ok(#csv.parse("a\n\n\nb") == 2, "parse: empty lines skipped")
ok(#csv.parse("") == 0, "parse: empty input -> no rows")
ok(csv.parse(",,")[1][3] == "" and #csv.parse(",,")[1] == 3, "parse: empty fields")
ok(csv.parse("\xef\xbb\xbfa,b")[1][1] == "a", "parse: a UTF-8 BOM is skipped")
ok(csv.parse("a;b", {delimiter = ";"})[1][2] == "b", "parse: delimiter option")
ok(csv.parse("a\tb", {delimiter = "\t"})[1][2] == "b", "parse: tab delimiter")
ok(csv.parse("'a,b',c", {quote = "'"})[1][1] == "a,b", "parse: quote option")
ok(csv.parse('a"b,c', {quote = ""})[1][1] == 'a"b', "parse: quote '' disables quoting")
local tr = csv.parse(' a , "b" ,c ', {trim = true})[1]
ok(tr[1] == "a" and tr[2] == "b" and tr[3] == "c", "parse: trim strips spaces around fields")
ok(csv.parse(" a ")[1][1] == " a ", "parse: spaces are data without trim")

local recs = csv.parse("id,name\n1,Ann\n2,\"Bob, Jr\"\n", {header = true})
ok(#recs == 2 and recs[1].id == "1" and recs[2].name == "Bob, Jr", "parse: header mode gives keyed records")
ok(#csv.parse("id,name\n", {header = true}) == 0, "parse: header only -> no records")

-- errors
local e = raises(csv.parse, 'a,"b\nc,d')
ok(e and e:find("esb.csv.parse: line 1: unterminated quoted field", 1, true), "parse: unterminated quote: " .. tostring(e))
e = raises(csv.parse, 'a\nb,c"d')
ok(e and e:find("esb.csv.parse: line 2: quote in an unquoted field", 1, true), "parse: quote in an unquoted field: " .. tostring(e))
e = raises(csv.parse, '"a"x,b')
ok(e and e:find("line 1: unexpected text after a closing quote", 1, true), "parse: text after a closing quote")
e = raises(csv.parse, "a,b\n1,2,3", {header = true})
ok(e and e:find("line 2: 3 fields, the header has 2", 1, true), "parse: header/field count mismatch: " .. tostring(e))
e = raises(csv.parse, "a,a\n1,2", {header = true})
ok(e and e:find("duplicate header 'a'", 1, true), "parse: duplicate header names refused")
ok(raises(csv.parse, "a", {delimiter = ",,"}):find("opts.delimiter", 1, true), "parse: bad delimiter option")
ok(raises(csv.parse, "a", {quote = ","}):find("opts.quote", 1, true), "parse: quote equal to delimiter refused")
ok(raises(csv.parse, 'x\n"a\n\nb', {}):find("line 2", 1, true), "parse: error line is where the quote opened")

-- parse_line
local row = csv.parse_line('1,"two",3\r\n')
ok(#row == 3 and row[2] == "two", "parse_line: one record")
ok(#csv.parse_line("") == 1 and csv.parse_line("")[1] == "", "parse_line: empty string is one empty field")
ok(raises(csv.parse_line, "a\nb"):find("more than one record", 1, true), "parse_line: refuses two records")

-- format
ok(csv.format({{"a", "b"}, {1, 2.5}}) == "a,b\r\n1,2.5\r\n", "format: CRLF lines, numbers")
ok(csv.format({{"x,y", 'q"q', "l\nl", ""}}) == '"x,y","q""q","l\nl",\r\n', "format: quotes when needed")
ok(csv.format({{"a"}}, {newline = "\n"}) == "a\n", "format: newline option")
ok(csv.format({{"a", "b"}}, {delimiter = ";", quote_all = true}) == '"a";"b"\r\n', "format: delimiter and quote_all")
ok(csv.format({{true, false}}) == "true,false\r\n", "format: booleans")
ok(csv.format({{""}}) == '""\r\n', "format: a lone empty field is quoted (so the line is not empty)")
ok(csv.format({{id = 1, name = "Ann"}}, {header = {"id", "name"}}) == "id,name\r\n1,Ann\r\n",
   "format: header option with keyed rows")
local src = {{"h1", "h2"}, {"a,b", 'c"d'}, {"e\r\nf", ""}}
local back = csv.parse(csv.format(src))
ok(back[2][1] == "a,b" and back[2][2] == 'c"d' and back[3][1] == "e\r\nf" and back[3][2] == "",
   "format -> parse round-trips")
ok(raises(csv.format, {{{}}}):find("row 1 field 1: cannot format a table", 1, true), "format: bad field type refused")
ok(raises(csv.format, {"x"}):find("row 1 is a string", 1, true), "format: rows must be tables")
ok(raises(csv.format, {{"a,b"}}, {quote = ""}):find("needs quoting", 1, true), "format: unquotable field refused")
ok(raises(csv.format, {}, {newline = "x"}), "format: bad newline option refused")

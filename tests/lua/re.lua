-- esb.re: PCRE2 match/gmatch/gsub/compile, flags, limits, errors.
local re = esb.re

-- match
local whole, y, m = re.match("date: 2024-05-01", "(\\d{4})-(\\d\\d)")
ok(whole == "2024-05" and y == "2024" and m == "05", "match: whole match then captures")
ok(re.match("abc", "x") == nil, "match: nil when nothing matches")
ok(select("#", re.match("abc", "b")) == 1, "match: no groups -> one value")
local w, a, b = re.match("ac", "(a)(b)?(c)")
ok(w == "ac" and a == "a" and b == nil, "match: a group that did not take part is nil")
ok(select(4, re.match("ac", "(a)(b)?(c)")) == "c", "match: later groups still returned")
ok(re.match("ABC", "b", "i") == "B", "match: flag i (caseless)")
ok(re.match("a\nb", "^b$", "m") == "b" and re.match("a\nb", "^b$") == nil, "match: flag m (multiline)")
ok(re.match("a\nb", "a.b", "s") == "a\nb" and re.match("a\nb", "a.b") == nil, "match: flag s (dotall)")
ok(re.match("ab", "a # comment\n b", "x") == "ab", "match: flag x (extended)")
ok(re.match("h\xc3\xa9!", "^..(.)", "u") == "h\xc3\xa9!", "match: flag u (UTF-8 characters)")
ok(re.match("h\xc3\xa9!", "^...") == "h\xc3\xa9", "match: without u, bytes")
ok(re.match("a\0b", "a\\x00b") == "a\0b", "match: NUL bytes in subject")
ok(re.match("x", "(?<name>x)") == "x", "match: named groups are positional captures")

-- gmatch
local words = {}
for wd in re.gmatch("one two  three", "\\w+") do words[#words + 1] = wd end
ok(#words == 3 and words[3] == "three", "gmatch: iterates matches")
local pairs_ = {}
for _, k, v in re.gmatch("a=1;b=2", "(\\w)=(\\d)") do pairs_[k] = v end
ok(pairs_.a == "1" and pairs_.b == "2", "gmatch: yields whole match then captures")
local n = 0
for _ in re.gmatch("abc", "x*") do n = n + 1 end
ok(n == 4, "gmatch: empty matches advance (4 in 'abc' for x*)")
local chars = {}
for c in re.gmatch("h\xc3\xa9", "", "u") do chars[#chars + 1] = c end
ok(#chars == 3, "gmatch: empty matches step by UTF-8 character with u")
local it = re.gmatch("ab", "a")
ok(it() == "a" and it() == nil and it() == nil, "gmatch: iterator stays finished")

-- gsub
local s, cnt = re.gsub("2024-05-01", "(\\d+)-(\\d+)-(\\d+)", "$3.$2.$1")
ok(s == "01.05.2024" and cnt == 1, "gsub: $n in the template, count returned")
ok(re.gsub("a.b", "\\.", "$$") == "a$b", "gsub: $$ is a dollar")
ok(re.gsub("abc", "b", "[$0]") == "a[b]c", "gsub: $0 is the whole match")
ok(select(2, re.gsub("aaa", "a", "b")) == 3, "gsub: counts every replacement")
ok(re.gsub("abc", "x*", "-") == "-a-b-c-", "gsub: empty matches like Perl/PCRE2")
ok(re.gsub("hello world", "\\w+", function(wd) return wd:upper() end) == "HELLO WORLD",
   "gsub: function replacement")
ok(re.gsub("k=v", "(\\w)=(\\w)", function(all, k, v) return v .. "=" .. k end) == "v=k",
   "gsub: the function gets whole, c1, c2")
ok(re.gsub("a b", "\\w", function(x) if x == "a" then return nil end return "X" end) == "a X",
   "gsub: nil/false from the function keeps the match")
ok(re.gsub("$x $y", "\\$(\\w)", {x = "1"}) == "1 $y", "gsub: table replacement keyed by the first capture")
ok(re.gsub("n=5", "\\d", function() return 7 end) == "n=7", "gsub: numbers as replacements")
ok(re.gsub("", "^", "x") == "x", "gsub: empty subject")
ok(raises(re.gsub, "a", "a", "$2"):find("the pattern has 0 groups", 1, true), "gsub: $n beyond the groups refused")
ok(raises(re.gsub, "a", "a", "$x"):find("must be followed by a digit", 1, true), "gsub: bad $ refused")
ok(raises(re.gsub, "a", "a", function() return {} end):find("returned a table", 1, true),
   "gsub: bad function result refused")
ok(raises(re.gsub, "a", "a", true), "gsub: bad replacement type refused")

-- compile
local rx = re.compile("(\\d+)")
ok(rx:match("ab12cd") == "12", "compile: rx:match")
local c = 0
for _ in rx:gmatch("1 2 3") do c = c + 1 end
ok(c == 3, "compile: rx:gmatch")
ok(rx:gsub("a1b22", "<$1>") == "a<1>b<22>", "compile: rx:gsub")
ok(re.compile("x", "i") == re.compile("x", "i"), "compile: cached (the same object for the same pattern and flags)")
ok(re.compile("x", "i") ~= re.compile("x"), "compile: flags are part of the cache key")
ok(re.match("a1", rx) == "1", "a compiled regex can stand in for the pattern")
ok(getmetatable(rx) == "esb.re.regex", "compile: the regex metatable is protected")
for i = 1, 200 do re.match("x", "x" .. i .. "|x") end
ok(re.match("abc", "b") == "b", "cache: many patterns (LRU eviction) still work")

-- errors and limits
local e = raises(re.match, "x", "(")
ok(e and e:find("esb.re: missing closing parenthesis at offset 1", 1, true), "invalid pattern: message and offset: " .. tostring(e))
e = raises(re.match, "x", "a", "q")
ok(e and e:find("unknown flag 'q'", 1, true), "unknown flag refused")
e = raises(re.match, string.rep("a", 40) .. "!", "(a+)+$")
ok(e and e:find("esb.re: match limit hit", 1, true), "catastrophic backtracking: match limit hit: " .. tostring(e))
e = raises(re.match, string.rep("ab", 1000000) .. "c", "^(?:a|b)*c$")
ok(e and e:find("esb.re: match limit hit", 1, true), "deep recursion: limit hit, no crash: " .. tostring(e))
e = raises(re.match, "\xff", "x", "u")
ok(e and e:find("not valid UTF-8", 1, true), "u flag: invalid UTF-8 subject refused")
ok(re.match(string.rep("y", 100000) .. "x", "^(.*?)x$") ~= nil, "a 100 kB subject with backtracking is fine")
ok(raises(re.match, nil, "x") ~= nil, "match: the subject must be a string")
ok(raises(re.match, "x", string.rep("a", 70000)):find("pattern longer", 1, true), "pattern size cap")

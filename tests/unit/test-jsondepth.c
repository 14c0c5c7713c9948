/* test-jsondepth.c - the JSON nesting-depth pre-scan: the limit itself,
 * brackets inside strings and after escapes, offsets, lines and columns. */
#include "config.h"

#include "jsondepth.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

static long scan(const char *s, int max)
{
    return esb_jsondepth_scan(s, strlen(s), max, NULL, NULL);
}

int main(void)
{
    ok(scan("", 1) == -1, "empty text: nothing too deep");
    ok(scan("{\"a\": 1}", 0) == 0, "max 0: the first bracket is too deep, at offset 0");
    ok(scan("[[1]]", 2) == -1, "depth 2 with max 2: accepted");
    ok(scan("[[[1]]]", 2) == 2, "depth 3 with max 2: the third bracket, offset 2");
    ok(scan("[1] [2] {\"a\": [3]}", 2) == -1, "siblings do not add up");
    ok(scan("[\"[[[[\", {\"}}}}\": [1]}]", 3) == -1, "brackets inside strings are not counted");
    ok(scan("[\"\\\"[[[\"]", 1) == -1, "an escaped quote does not end the string");
    ok(scan("[\"\\\\\", [[1]]]", 2) == 8, "an escaped backslash does: the bracket after counts");

    int line = 0, col = 0;
    const char *t = "{\n  \"a\": [\n    [1]\n  ]\n}";
    long off = esb_jsondepth_scan(t, strlen(t), 2, &line, &col);
    ok(off == 15 && line == 3 && col == 5, "line 3 column 5 at offset 15 (got %ld, %d:%d)", off,
       line, col);

    size_t depth = 100000;
    char *deep = malloc(depth);
    if (!deep) bail("malloc");
    memset(deep, '[', depth);
    ok(esb_jsondepth_scan(deep, depth, 64, NULL, NULL) == 64,
       "100000 open brackets: refused at the 65th, in one linear pass");
    free(deep);
    return tap_done();
}

/* test-jsonpath.c - the JSON path subset: what each form selects (keys,
 * quoted keys, indexes, wildcards over arrays and objects, chains), what it
 * does not (missing members, wrong types), and the exact error messages
 * with columns for bad paths. */
#include "config.h"

#include "jsonpath.h"
#include "../tap.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *doc_text =
    "{\"a\": {\"b\": 1},"
    " \"list\": [{\"b\": \"x\"}, {\"b\": \"y\"}, {\"c\": 3}],"
    " \"a b\": true, \"it's\": \"q\", \"arr\": [[1, 2], [3]], \"empty\": [],"
    " \"-odd_name$\": 7, \"\xc3\xa9t\xc3\xa9\": \"summer\"}";

static json_t *doc;

/* Evaluate path and return the selected values as compact JSON text joined
 * by spaces ("" when nothing matched, "ERR" when it did not compile). */
static char *sel(const char *path)
{
    struct esb_jsonpath *p;
    struct esb_err err = {0};
    if (esb_jsonpath_compile(path, &p, &err) != 0) return strdup("ERR");
    json_t *vals[16];
    size_t n = esb_jsonpath_collect(p, doc, vals, 16);
    char *out = calloc(1, 1024);
    for (size_t i = 0; i < n && i < 16; i++) {
        char *t = json_dumps(vals[i], JSON_ENCODE_ANY | JSON_COMPACT);
        if (i) strcat(out, " ");
        strncat(out, t, 1000 - strlen(out));
        free(t);
    }
    esb_jsonpath_free(p);
    return out;
}

static void is_sel(const char *path, const char *want)
{
    char *got = sel(path);
    if (!ok(strcmp(got, want) == 0, "%s selects [%s]", path, want)) diag("got [%s]", got);
    free(got);
}

static void is_err(const char *path, const char *want)
{
    struct esb_jsonpath *p = NULL;
    struct esb_err err = {0};
    int rc = esb_jsonpath_compile(path, &p, &err);
    if (!ok(rc == ESB_EINVAL && p == NULL && strcmp(err.msg, want) == 0, "bad path: %s", want))
        diag("rc=%d msg=%s", rc, err.msg);
    esb_jsonpath_free(p);
}

static int stop_at_second(void *ctx, json_t *v)
{
    (void)v;
    int *n = ctx;
    return ++*n == 2 ? 42 : 0;
}

int main(void)
{
    json_error_t je;
    doc = json_loads(doc_text, 0, &je);
    if (!doc) bail("test document: %s", je.text);

    /* selection */
    is_sel("$", "{\"a\":{\"b\":1},\"list\":[{\"b\":\"x\"},{\"b\":\"y\"},{\"c\":3}],\"a b\":true,"
                "\"it's\":\"q\",\"arr\":[[1,2],[3]],\"empty\":[],\"-odd_name$\":7,"
                "\"\xc3\xa9t\xc3\xa9\":\"summer\"}");
    is_sel("$.a.b", "1");
    is_sel("$.a", "{\"b\":1}");
    is_sel("$['a']['b']", "1");
    is_sel("$[\"a\"].b", "1");
    is_sel("$['a b']", "true");
    is_sel("$['it\\'s']", "\"q\"");
    is_sel("$.-odd_name$", "7");
    is_sel("$.\xc3\xa9t\xc3\xa9", "\"summer\"");
    is_sel("$.list[0].b", "\"x\"");
    is_sel("$.list[1]['b']", "\"y\"");
    is_sel("$.list[*].b", "\"x\" \"y\"");
    is_sel("$.list[*].c", "3");
    is_sel("$.arr[*][0]", "1 3");
    is_sel("$.arr[0][*]", "1 2");
    is_sel("$.arr[*][*]", "1 2 3");
    is_sel("$.a[*]", "1"); /* wildcard over an object: its member values */
    is_sel("$.empty[*]", "");
    is_sel("$.missing", "");
    is_sel("$.missing.deeper[0]", "");
    is_sel("$.list[3]", "");
    is_sel("$.a.b.c", "");  /* a member of a number */
    is_sel("$.list.b", ""); /* a member of an array */
    is_sel("$.a[0]", "");   /* an index into an object */
    is_sel("$.list[007].b", "");
    is_sel("$.list[01].b", "\"y\""); /* leading zeros: plain decimal */

    struct esb_jsonpath *p;
    struct esb_err err = {0};
    if (esb_jsonpath_compile("$.list[*]", &p, &err) != 0) bail("compile: %s", err.msg);
    int n = 0;
    ok(esb_jsonpath_eval(p, doc, stop_at_second, &n) == 42 && n == 2,
       "eval stops at the first non-zero callback and returns it");
    json_t *one[1];
    ok(esb_jsonpath_collect(p, doc, one, 1) == 3 && json_is_object(one[0]),
       "collect counts every match, stores up to max");
    ok(strcmp(esb_jsonpath_text(p), "$.list[*]") == 0, "text is kept");
    ok(esb_jsonpath_eval(p, NULL, stop_at_second, &n) == 0, "a NULL root selects nothing");
    esb_jsonpath_free(p);
    esb_jsonpath_free(NULL);

    /* errors, with 1-based columns */
    is_err("$.a[x]", "$.a[x]: expected a number or * at column 5");
    is_err("", ": a JSON path must start with '$' at column 1");
    is_err("a.b", "a.b: a JSON path must start with '$' at column 1");
    is_err("$.", "$.: expected a member name after '.' at column 3");
    is_err("$.a..b", "$.a..b: expected a member name after '.' at column 5");
    is_err("$.a[", "$.a[: expected a number or * at column 5");
    is_err("$.a[1", "$.a[1: expected ']' at column 6");
    is_err("$.a[-1]", "$.a[-1]: expected a number or * at column 5");
    is_err("$.a[*x]", "$.a[*x]: expected ']' at column 6");
    is_err("$['abc", "$['abc: unterminated quoted name starting at column 3");
    is_err("$['a\\x']", "$['a\\x']: only \\\\, \\' and \\\" escapes are allowed at column 5");
    is_err("$.a b", "$.a b: expected '.' or '[' at column 4");
    is_err("$a", "$a: expected '.' or '[' at column 2");
    is_err("$.a.*", "$.a.*: expected a member name after '.' at column 5");
    is_err("$[99999999999]", "$[99999999999]: array index too large at column 3");

    char longp[ESB_JSONPATH_MAX_LEN + 8];
    longp[0] = '$';
    for (size_t i = 1; i < sizeof(longp) - 1; i++) longp[i] = i % 2 ? '.' : 'a';
    longp[sizeof(longp) - 1] = '\0';
    p = NULL;
    ok(esb_jsonpath_compile(longp, &p, &err) == ESB_EINVAL && strstr(err.msg, "longer than"),
       "a path over the length cap is refused");
    char many[4 * (ESB_JSONPATH_MAX_STEPS + 1) + 2] = "$";
    for (int i = 0; i <= ESB_JSONPATH_MAX_STEPS; i++) strcat(many, "[0]");
    ok(esb_jsonpath_compile(many, &p, &err) == ESB_EINVAL && strstr(err.msg, "too many selectors"),
       "more than %d selectors are refused", ESB_JSONPATH_MAX_STEPS);
    many[strlen(many) - 3] = '\0';
    ok(esb_jsonpath_compile(many, &p, &err) == 0, "exactly %d selectors compile",
       ESB_JSONPATH_MAX_STEPS);
    esb_jsonpath_free(p);

    json_decref(doc);
    return tap_done();
}

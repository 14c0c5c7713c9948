/* test-conf-attr.c - the attribute tables: size/duration/bool/listen parsers
 * (good values, bad values, overflow), esb_attrs_parse on small XML snippets
 * (defaults, given values, unknown/missing/out-of-range attributes with the
 * file:line of the element), and the markdown reference. */
#include "config.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "../tap.h"
#include "conf_attr.h"

static void test_size(void)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"4096", 4096},
        {"4096B", 4096},
        {"10KB", 10240},
        {"10KiB", 10240},
        {"10kb", 10240},
        {"1MB", 1048576},
        {"1MiB", 1048576},
        {"1.5KB", 1536},
        {"0.5MB", 524288},
        {"1GB", 1073741824ull},
        {"2GiB", 2147483648ull},
        {"1TB", 1099511627776ull},
        {"16777215TB", 16777215ull << 40},
        {"18446744073709551615", UINT64_MAX},
        {"007", 7},
    };
    static const char *const bad[] = {
        "",
        "KB",
        "-1",
        "+1",
        "1.5B",
        "10 MB",
        "10XB",
        "1.",
        ".5KB",
        "1.1234567KB",
        "1e3",
        "10M B",
        "1PB",
        "0x10",
        " 10",
        "10MBs",
        "16777216TB",           /* 2^64: one past the top */
        "18446744073709551616", /* UINT64_MAX + 1 */
        "99999999999999999999999",
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(good); i++) {
        uint64_t v = 12345;
        int rc = esb_parse_size(good[i].s, &v);
        ok(rc == 0 && v == good[i].v, "size '%s' = %" PRIu64 " (got rc %d, %" PRIu64 ")", good[i].s,
           good[i].v, rc, v);
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        uint64_t v = 12345;
        int rc = esb_parse_size(bad[i], &v);
        ok(rc == ESB_EINVAL && v == 12345, "size '%s' refused, output untouched", bad[i]);
    }
    uint64_t v = 0;
    ok(esb_parse_size(NULL, &v) == ESB_EINVAL, "size NULL refused");
}

static void test_duration(void)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},          {"250", 250},     {"500ms", 500},
        {"5s", 5000},      {"2m", 120000},   {"1h", 3600000},
        {"24h", 86400000}, {"1d", 86400000}, {"1.5s", 1500},
        {"0.25h", 900000}, {"1.001s", 1001}, {"213503982334d", 213503982334ull * 86400000ull},
    };
    static const char *const bad[] = {
        "",
        "s",
        "5S",
        "5sec",
        "5 s",
        "-5s",
        "1.0005s",
        "0.5",
        "0.5ms",
        "1.5.5s",
        "1w",
        "5mss",
        "213503982335d", /* overflows 64-bit ms */
        "18446744073709551616",
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(good); i++) {
        uint64_t v = 12345;
        int rc = esb_parse_duration_ms(good[i].s, &v);
        ok(rc == 0 && v == good[i].v, "duration '%s' = %" PRIu64 " ms (got rc %d, %" PRIu64 ")",
           good[i].s, good[i].v, rc, v);
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        uint64_t v = 12345;
        int rc = esb_parse_duration_ms(bad[i], &v);
        ok(rc == ESB_EINVAL && v == 12345, "duration '%s' refused, output untouched", bad[i]);
    }
}

static void test_bool(void)
{
    static const char *const yes[] = {"true", "yes", "1", "TRUE", "Yes"};
    static const char *const no[] = {"false", "no", "0", "False"};
    static const char *const bad[] = {"", "maybe", "2", "on", "truee", " true"};
    for (size_t i = 0; i < ESB_ARRAY_LEN(yes); i++) {
        int b = 0;
        ok(esb_parse_bool(yes[i], &b) == 0 && b == 1, "bool '%s' is true", yes[i]);
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(no); i++) {
        int b = 1;
        ok(esb_parse_bool(no[i], &b) == 0 && b == 0, "bool '%s' is false", no[i]);
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        int b = 7;
        ok(esb_parse_bool(bad[i], &b) == ESB_EINVAL && b == 7, "bool '%s' refused", bad[i]);
    }
}

static void test_listen(void)
{
    static const struct {
        const char *s, *host;
        unsigned port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"localhost:1", "localhost", 1},
        {"[::1]:9090", "::1", 9090},
        {"[::]:80", "::", 80},
        {"[fe80::1:2]:443", "fe80::1:2", 443},
    };
    static const char *const bad[] = {
        "127.0.0.1:0",
        ":8080",
        "127.0.0.1:65536",
        "127.0.0.1",
        "127.0.0.1:",
        "example.com:80",
        "::1:80",
        "[::1]80",
        "[::1]:",
        "[127.0.0.1]:80",
        "127.0.0.1:80x",
        "1.2.3.4:+80",
        "1.2.3:80",
        "[::1:80",
        "8080",
        "127.0.0.1:99999999999999999999",
        "localhost :80",
        "",
    };
    for (size_t i = 0; i < ESB_ARRAY_LEN(good); i++) {
        char *host = NULL;
        unsigned port = 0;
        int rc = esb_parse_listen(good[i].s, &host, &port);
        ok(rc == 0 && host && strcmp(host, good[i].host) == 0 && port == good[i].port,
           "listen '%s' = host '%s' port %u", good[i].s, good[i].host, good[i].port);
        free(host);
    }
    for (size_t i = 0; i < ESB_ARRAY_LEN(bad); i++) {
        char *host = NULL;
        unsigned port = 0;
        int rc = esb_parse_listen(bad[i], &host, &port);
        ok(rc == ESB_EINVAL && host == NULL && port == 0, "listen '%s' refused", bad[i]);
    }
}

/* ---- esb_attrs_parse ---- */

struct sample {
    char *name;
    int flag;
    uint64_t count, size, wait;
    int mode;
    char *listen;
    double ratio;
    char *note;
};

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

static const struct esb_attr_spec sample_attrs[] = {
    {"name", ESB_ATTR_STRING, NULL, offsetof(struct sample, name), 1, 0, 0, NULL, "The name."},
    {"flag", ESB_ATTR_BOOL, "false", offsetof(struct sample, flag), 0, 0, 0, NULL, "A flag."},
    {"count", ESB_ATTR_UINT, "4", offsetof(struct sample, count), 0, 1, 100, NULL, "How many."},
    {"size", ESB_ATTR_SIZE, "1MB", offsetof(struct sample, size), 0, 0, 1ull << 30, NULL,
     "How big."},
    {"wait", ESB_ATTR_DURATION, "5s", offsetof(struct sample, wait), 0, 1, 3600000, NULL,
     "How long | with a pipe."},
    {"mode", ESB_ATTR_ENUM, "safe", offsetof(struct sample, mode), 0, 0, 0, modes, "The mode."},
    {"listen", ESB_ATTR_LISTEN, "127.0.0.1:80", offsetof(struct sample, listen), 0, 0, 0, NULL,
     "Where."},
    {"ratio", ESB_ATTR_DOUBLE, "0.5", offsetof(struct sample, ratio), 0, 0, 1, NULL, "A ratio."},
    {"note", ESB_ATTR_STRING, "", offsetof(struct sample, note), 0, 0, 0, NULL, "A note."},
    ESB_ATTR_END,
};

static xmlDoc *doc;

/* Parse xml and return its root element (the previous doc is freed). */
static xmlNode *snippet(const char *xml)
{
    if (doc) xmlFreeDoc(doc);
    doc = xmlReadMemory(xml, (int)strlen(xml), "snippet.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR);
    if (!doc) bail("snippet does not parse: %s", xml);
    return xmlDocGetRootElement(doc);
}

/* Run esb_attrs_parse on xml; returns rc, err in *err. */
static int parse(const char *xml, struct sample *s, struct esb_err *err)
{
    memset(s, 0, sizeof(*s));
    memset(err, 0, sizeof(*err));
    return esb_attrs_parse(sample_attrs, snippet(xml), "conf/test.xml", s, err);
}

/* Expect a failure whose message starts with prefix and contains part. */
static void expect_error(const char *xml, const char *prefix, const char *part, const char *what)
{
    struct sample s;
    struct esb_err err;
    int rc = parse(xml, &s, &err);
    int good = rc == ESB_EINVAL && err.code == ESB_EINVAL &&
               strncmp(err.msg, prefix, strlen(prefix)) == 0 && strstr(err.msg, part);
    ok(good, "%s: error names the place and the problem", what);
    if (!good) diag("got rc %d: %s", rc, err.msg);
    ok(s.name == NULL && s.listen == NULL && s.note == NULL, "%s: nothing left allocated", what);
}

static void test_attrs_parse(void)
{
    struct sample s;
    struct esb_err err;

    int rc = parse("<thing name='a'/>", &s, &err);
    ok(rc == 0, "defaults: parses (%s)", err.msg);
    ok(s.name && strcmp(s.name, "a") == 0, "defaults: name given");
    ok(s.flag == 0 && s.count == 4 && s.size == 1048576 && s.wait == 5000 && s.mode == 1,
       "defaults: flag, count, size, wait, mode");
    ok(s.listen && strcmp(s.listen, "127.0.0.1:80") == 0 && s.ratio == 0.5,
       "defaults: listen and ratio");
    ok(s.note && s.note[0] == '\0', "defaults: empty-string default is an empty string");
    esb_attrs_free(sample_attrs, &s);
    ok(s.name == NULL && s.listen == NULL && s.note == NULL, "free NULLs the strings");
    esb_attrs_free(sample_attrs, &s); /* twice is harmless */

    rc = parse("<thing name='b' flag='yes' count='100' size='1GB' wait='1.5s' mode='paranoid'"
               " listen='[::1]:9090' ratio='1' note='hi &amp; bye'/>",
               &s, &err);
    ok(rc == 0, "all given: parses (%s)", err.msg);
    ok(strcmp(s.name, "b") == 0 && s.flag == 1 && s.count == 100 && s.size == (1ull << 30) &&
           s.wait == 1500 && s.mode == 2,
       "all given: values stored");
    ok(strcmp(s.listen, "[::1]:9090") == 0 && s.ratio == 1.0 && strcmp(s.note, "hi & bye") == 0,
       "all given: listen, ratio, entity-decoded string");
    esb_attrs_free(sample_attrs, &s);

    /* Errors: each names file:line of the element, the attribute and the value. */
    expect_error("<thing\n\n name='x' colour='red'/>",
                 "conf/test.xml:3: element <thing>: "
                 "attribute 'colour': unknown attribute",
                 "expected one of: name, flag, count", "unknown attribute");
    {
        xmlNode *root = snippet("<root>\n\n<thing flag='true'/></root>");
        xmlNode *n = root->children;
        while (n && n->type != XML_ELEMENT_NODE) n = n->next;
        memset(&s, 0, sizeof(s));
        rc = esb_attrs_parse(sample_attrs, n, "conf/test.xml", &s, &err);
        ok(rc == ESB_EINVAL &&
               strcmp(err.msg, "conf/test.xml:3: element <thing>: attribute 'name': required "
                               "but missing (expected text)") == 0,
           "required missing: exact message with line 3 (%s)", err.msg);
    }
    expect_error("<thing name='a' count='0'/>",
                 "conf/test.xml:1: element <thing>: attribute "
                 "'count': out of range (got '0'; expected a whole number in 1..100)",
                 "", "uint below min");
    expect_error("<thing name='a' count='101'/>", "conf/test.xml:1:", "out of range (got '101'",
                 "uint above max");
    expect_error("<thing name='a' count='1x'/>",
                 "conf/test.xml:1:", "attribute 'count': not a whole number", "uint not a number");
    expect_error("<thing name='a' count='99999999999999999999'/>",
                 "conf/test.xml:1:", "not a whole number (or too large)", "uint overflow");
    expect_error("<thing name='a' size='2GB'/>", "conf/test.xml:1:",
                 "'size': out of range (got '2GB'; expected a size like 4096, 512KB, 10MB, 1GB; "
                 "range 0..1GB)",
                 "size above max");
    expect_error("<thing name='a' size='10XB'/>", "conf/test.xml:1:", "'size': not a size",
                 "bad size");
    expect_error("<thing name='a' wait='5 s'/>", "conf/test.xml:1:",
                 "'wait': not a duration (or too large) (got '5 s'; expected a duration like "
                 "500ms, 5s, 2m, 1h, 1d; range 1ms..1h)",
                 "bad duration");
    expect_error("<thing name='a' wait='0'/>", "conf/test.xml:1:", "'wait': out of range",
                 "duration below min");
    expect_error("<thing name='a' wait='2h'/>", "conf/test.xml:1:", "'wait': out of range",
                 "duration above max");
    expect_error("<thing name='a' flag='maybe'/>",
                 "conf/test.xml:1:", "'flag': not a boolean (got 'maybe'; expected true or false)",
                 "bad bool");
    expect_error("<thing name='a' mode='slow'/>", "conf/test.xml:1:",
                 "'mode': unknown value (got 'slow'; expected one of fast, safe, paranoid)",
                 "bad enum");
    expect_error("<thing name='a' listen='example.com:80'/>",
                 "conf/test.xml:1:", "'listen': not a listen address (got 'example.com:80'",
                 "bad listen");
    expect_error("<thing name='a' ratio='1.5'/>", "conf/test.xml:1:", "'ratio': out of range",
                 "double above max");
    expect_error("<thing name='a' ratio='nan'/>", "conf/test.xml:1:", "'ratio': not a number",
                 "double nan");
    expect_error("<thing xmlns:x='urn:x' name='a' x:flag='1'/>",
                 "conf/test.xml:1:", "attribute 'x:flag': unknown attribute",
                 "namespaced attribute");

    /* A long value is cut in the message, which stays within esb_err. */
    char xml[600];
    char big[400];
    memset(big, '9', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(xml, sizeof(xml), "<thing name='a' count='%s'/>", big);
    rc = parse(xml, &s, &err);
    ok(rc == ESB_EINVAL && strstr(err.msg, "999...'") && strlen(err.msg) < sizeof(err.msg),
       "long value quoted with '...' (%s)", err.msg);

    /* A bad built-in default is reported, not silently used. */
    static const struct esb_attr_spec broken[] = {
        {"count", ESB_ATTR_UINT, "lots", offsetof(struct sample, count), 0, 0, 0, NULL, "x"},
        ESB_ATTR_END,
    };
    memset(&s, 0, sizeof(s));
    rc = esb_attrs_parse(broken, snippet("<thing/>"), "conf/test.xml", &s, &err);
    ok(rc == ESB_EINVAL && strstr(err.msg, "built-in default 'lots' is invalid"),
       "bad default in a table is an error (%s)", err.msg);

    /* A NULL err is allowed. */
    memset(&s, 0, sizeof(s));
    rc = esb_attrs_parse(sample_attrs, snippet("<thing/>"), "f", &s, NULL);
    ok(rc == ESB_EINVAL && s.listen == NULL, "NULL err: still fails cleanly");
}

/* ---- docs ---- */

struct out {
    char buf[4096];
    size_t len;
};

static void collect(void *ctx, const char *text)
{
    struct out *o = ctx;
    size_t n = strlen(text);
    if (o->len + n >= sizeof(o->buf)) bail("doc output too long");
    memcpy(o->buf + o->len, text, n + 1);
    o->len += n;
}

static void test_doc(void)
{
    struct out o = {.len = 0};
    esb_attrs_doc("thing", "A thing for tests.", sample_attrs, collect, &o);
    ok(strncmp(o.buf, "### `<thing>`\n\nA thing for tests.\n\n| attribute | type | default |",
               44) == 0,
       "doc: heading, summary, table header");
    ok(strstr(o.buf, "| `name` | string | *required* |  | The name. |\n") != NULL,
       "doc: required string row");
    ok(strstr(o.buf, "| `count` | integer | `4` | 1..100 | How many. |\n") != NULL,
       "doc: integer row with range");
    ok(strstr(o.buf, "| `size` | size | `1MB` | 0..1GB | How big. |\n") != NULL,
       "doc: size row, range in units");
    ok(strstr(o.buf, "| `wait` | duration | `5s` | 1ms..1h | How long \\| with a pipe. |\n") !=
           NULL,
       "doc: duration row, pipe escaped");
    ok(strstr(o.buf, "| `mode` | enum | `safe` | `fast`, `safe`, `paranoid` | The mode. |\n") !=
           NULL,
       "doc: enum values listed");
    ok(strstr(o.buf, "| `flag` | bool | `false` | `true`, `false` | A flag. |\n") != NULL,
       "doc: bool row");
    ok(strstr(o.buf, "| `note` | string | (empty) |  | A note. |\n") != NULL,
       "doc: empty default shown");
    if (!strstr(o.buf, "| `count` |")) diag("%s", o.buf);
}

int main(void)
{
    test_size();
    test_duration();
    test_bool();
    test_listen();
    test_attrs_parse();
    test_doc();
    if (doc) xmlFreeDoc(doc);
    xmlCleanupParser();
    return tap_done();
}

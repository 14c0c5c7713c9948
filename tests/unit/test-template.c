/* test-template.c - templates: every placeholder, escapes, the render cap,
 * compile errors with columns, and file-name rendering against hostile
 * header values (path traversal, slashes, control bytes, dots, very long
 * and multi-byte values, random bytes). */
#include "config.h"

#include "msg.h"
#include "template.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

/* 2024-03-05T06:07:08.250Z */
#define NOW_MS 1709618828250ull

static struct esb_msg *msg;

static char *render(const char *src)
{
    static char buf[512];
    struct esb_template *t;
    struct esb_err err = {0};
    if (esb_template_compile(src, 0, &t, &err) != 0) {
        snprintf(buf, sizeof(buf), "ERR %s", err.msg);
        return buf;
    }
    struct esb_template_env env = {msg, "orders", NOW_MS};
    size_t len;
    if (esb_template_render(t, &env, buf, sizeof(buf), &len) != 0 || len != strlen(buf))
        snprintf(buf, sizeof(buf), "RENDER FAILED");
    esb_template_free(t);
    return buf;
}

static void is_render(const char *src, const char *want)
{
    const char *got = render(src);
    if (!ok(strcmp(got, want) == 0, "'%s' renders '%s'", src, want)) diag("got '%s'", got);
}

static void is_compile_err(const char *src, unsigned flags, const char *want)
{
    struct esb_template *t = NULL;
    struct esb_err err = {0};
    int rc = esb_template_compile(src, flags, &t, &err);
    if (!ok(rc == ESB_EINVAL && !t && strstr(err.msg, want), "'%.40s' is refused: %s", src, want))
        diag("rc=%d msg=%s", rc, err.msg);
    esb_template_free(t);
}

/* Render the file name template src with header "n" set to value. Returns
 * the rc; the name in out. */
static int name_of(const char *src, const char *value, char out[ESB_TEMPLATE_NAME_MAX + 1])
{
    struct esb_template *t;
    struct esb_err err = {0};
    if (esb_template_compile(src, ESB_TEMPLATE_FILENAME, &t, &err) != 0)
        bail("compile %s: %s", src, err.msg);
    if (value)
        esb_msg_set_header(msg, "n", value);
    else
        esb_msg_remove_header(msg, "n");
    struct esb_template_env env = {msg, "orders", NOW_MS};
    int rc = esb_template_render_filename(t, &env, out);
    esb_template_free(t);
    return rc;
}

/* The promises of a file name: non-empty, <= 255 bytes, no '/', no control
 * byte, no "..", no leading '.'. */
static int safe_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ESB_TEMPLATE_NAME_MAX || s[0] == '.' || strstr(s, "..")) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        int k = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : 3;
        s++;
        for (int i = 0; i < k; i++, s++)
            if ((*s & 0xC0) != 0x80) return 0;
    }
    return 1;
}

static void is_name(const char *src, const char *value, const char *want)
{
    char out[ESB_TEMPLATE_NAME_MAX + 1];
    int rc = name_of(src, value, out);
    char shown[64]; /* the value for the test name, control bytes as '?' */
    snprintf(shown, sizeof(shown), "%s", value);
    for (char *p = shown; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    if (!ok(rc == 0 && strcmp(out, want) == 0 && safe_name(out), "name '%s' with n='%s' is '%s'",
            src, shown, want))
        diag("rc=%d got '%s'", rc, out);
}

static void test_placeholders(void)
{
    esb_msg_set_header(msg, "X-Order", "42");
    esb_msg_set_content_type(msg, "application/json");
    char want[128];
    snprintf(want, sizeof(want), "id=%s", msg->id_text);
    is_render("id={id}", want);
    is_render("{header:x-order}", "42"); /* header names are case-insensitive */
    is_render("{header:X-ORDER}/{header:missing}/", "42//");
    is_render("{content-type}", "application/json");
    is_render("{route}", "orders");
    is_render("{date:%Y%m%d}", "20240305");
    is_render("{date:%Y-%m-%dT%H:%M:%SZ}", "2024-03-05T06:07:08Z");
    is_render("{{", "{");
    is_render("{{id}", "{id}");
    is_render("a}b}}", "a}b}}");
    is_render("", "");
    is_render("order {header:x-order} via {route} on {date:%d.%m}", "order 42 via orders on 05.03");

    struct esb_template *t;
    struct esb_err err = {0};
    if (esb_template_compile("{route}:{id}", 0, &t, &err)) bail("%s", err.msg);
    struct esb_template_env env = {msg, NULL, 0};
    char buf[128];
    size_t len;
    snprintf(want, sizeof(want), ":%s", msg->id_text);
    ok(esb_template_render(t, &env, buf, sizeof(buf), &len) == 0 && strcmp(buf, want) == 0,
       "no route renders {route} as empty");
    ok(strcmp(esb_template_text(t), "{route}:{id}") == 0, "the source text is kept");
    esb_template_free(t);

    /* {date} with now_ms 0 uses the clock: the year is plausible */
    if (esb_template_compile("{date:%Y}", 0, &t, &err)) bail("%s", err.msg);
    ok(esb_template_render(t, &env, buf, sizeof(buf), &len) == 0 && atoi(buf) >= 2024,
       "{date} defaults to now");
    esb_template_free(t);
}

static void test_cap(void)
{
    struct esb_template *t;
    struct esb_err err = {0};
    if (esb_template_compile("abc{header:x-order}gh", 0, &t, &err)) bail("%s", err.msg);
    struct esb_template_env env = {msg, NULL, NOW_MS};
    char buf[16];
    size_t len = 99;
    memset(buf, 'Z', sizeof(buf));
    ok(esb_template_render(t, &env, buf, 5, &len) == ESB_EFULL && len == 4 &&
           strcmp(buf, "abc4") == 0 && buf[5] == 'Z',
       "over the cap: ESB_EFULL, the prefix that fits, nothing written past cap");
    ok(esb_template_render(t, &env, buf, 8, &len) == 0 && len == 7 && strcmp(buf, "abc42gh") == 0,
       "an exact fit renders whole");
    ok(esb_template_render(t, &env, buf, 1, &len) == ESB_EFULL && len == 0 && buf[0] == '\0',
       "cap 1 gives the empty string");
    esb_template_free(t);
}

static void test_compile_errors(void)
{
    is_compile_err("{bogus}", 0, "unknown placeholder {bogus} at column 1");
    is_compile_err("x {ID}", 0, "unknown placeholder {ID} at column 3");
    is_compile_err("{header}", 0, "unknown placeholder {header}");
    is_compile_err("{body}", 0, "unknown placeholder {body}");
    is_compile_err("abc{id", 0, "unclosed '{' at column 4");
    is_compile_err("{header:}", 0, "{header:NAME} needs a name at column 1");
    is_compile_err("{header:a b}", 0, "bad character in a header name at column 10");
    is_compile_err("{date:}", 0, "{date:FMT} needs a format");
    is_compile_err("{date:%Q}", 0, "unsupported conversion '%Q'");
    is_compile_err("{date:%Y%}", 0, "unsupported conversion");
    is_compile_err("{date:%Ey}", 0, "unsupported conversion '%E'");
    char *big = malloc(ESB_TEMPLATE_MAX_LEN + 2);
    memset(big, 'a', ESB_TEMPLATE_MAX_LEN + 1);
    big[ESB_TEMPLATE_MAX_LEN + 1] = '\0';
    is_compile_err(big, 0, "longer than 4096");
    free(big);
    /* file names: the literal text is checked at compile time */
    is_compile_err("out/{id}", ESB_TEMPLATE_FILENAME, "'/' is not allowed");
    is_compile_err("../{id}", ESB_TEMPLATE_FILENAME, "may not start with '.'");
    is_compile_err(".{id}", ESB_TEMPLATE_FILENAME, "may not start with '.'");
    is_compile_err("{id}..json", ESB_TEMPLATE_FILENAME, "\"..\" is not allowed");
    is_compile_err("{id}\t.json", ESB_TEMPLATE_FILENAME, "control character");
    char lit[ESB_TEMPLATE_NAME_MAX + 8];
    memset(lit, 'n', sizeof(lit) - 1);
    lit[sizeof(lit) - 1] = '\0';
    is_compile_err(lit, ESB_TEMPLATE_FILENAME, "over 255 bytes");

    struct esb_template *t;
    struct esb_err err = {0};
    ok(esb_template_compile("out/{id}", 0, &t, &err) == 0, "'/' is fine outside file names");
    char out[ESB_TEMPLATE_NAME_MAX + 1];
    struct esb_template_env env = {msg, NULL, NOW_MS};
    ok(esb_template_render_filename(t, &env, out) == ESB_EINVAL,
       "render_filename refuses a template not compiled for file names");
    esb_template_free(t);
}

static void test_filenames(void)
{
    char want[64];
    snprintf(want, sizeof(want), "%s.json", msg->id_text);
    is_name("{id}.json", "x", want);
    is_name("{header:n}.json", "order-7", "order-7.json");
    is_name("{header:n}", "../../etc/passwd", "_._.__etc_passwd");
    is_name("in-{header:n}", "../../etc/passwd", "in-.__.__etc_passwd");
    is_name("{header:n}", "a/b", "a_b");
    is_name("{header:n}", "/", "_");
    is_name("{header:n}", "\x01", "_");
    is_name("{header:n}", "a\tb\nc\rd\x7f", "a_b_c_d_");
    is_name("{header:n}", ".", "_");
    is_name("{header:n}", "..", "_.");
    is_name("{header:n}", "...", "_._");
    is_name("{header:n}", ".hidden", "_hidden");
    is_name("{header:n}.json", "x.", "x._json");
    is_name("a.{header:n}", ".b", "a._b");
    is_name("{header:n}-{date:%Y/%m/%d}", "r", "r-2024_03_05");
    is_name("{header:n}", "caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac");

    char out[ESB_TEMPLATE_NAME_MAX + 1];
    ok(name_of("{header:n}", NULL, out) == ESB_EINVAL, "an empty name is refused");
    ok(name_of("{header:n}", "", out) == ESB_EINVAL, "an empty value alone is refused");
    ok(name_of("{header:n}.json", NULL, out) == 0 && strcmp(out, "_json") == 0,
       "a missing value cannot make a dot file");

    char *big = malloc(10001);
    memset(big, 'a', 10000);
    big[10000] = '\0';
    ok(name_of("{header:n}.json", big, out) == 0 && strlen(out) == ESB_TEMPLATE_NAME_MAX &&
           strcmp(out + ESB_TEMPLATE_NAME_MAX - 5, ".json") == 0 && safe_name(out),
       "a 10000-byte value is cut to a 255-byte name that keeps its literal suffix");
    ok(name_of("{header:n}{header:n}", big, out) == 0 && strlen(out) == ESB_TEMPLATE_NAME_MAX,
       "two long values together stay within 255 bytes");
    memset(big, '.', 10000);
    ok(name_of("{header:n}", big, out) == 0 && safe_name(out), "10000 dots make a safe name");
    /* 'x' + 200 two-byte characters: the cut falls inside one */
    strcpy(big, "x");
    for (int i = 0; i < 200; i++) strcat(big, "\xc3\xa9");
    ok(name_of("{header:n}.json", big, out) == 0 && strlen(out) == 254 &&
           valid_utf8((unsigned char *)out) && strcmp(out + 249, ".json") == 0,
       "a long UTF-8 value is cut on a character boundary");
    free(big);

    /* random hostile values */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int all_safe = 1;
    for (int i = 0; i < 3000 && all_safe; i++) {
        char v[400];
        size_t n = 1 + (size_t)(i % 399);
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* mostly dots and slashes, then any byte but NUL */
            unsigned r = (unsigned)(x % 8);
            v[k] = r < 3 ? '.' : r < 5 ? '/' : (char)(1 + (x >> 8) % 255);
        }
        v[n] = '\0';
        static const char *const srcs[] = {"{header:n}", "p-{header:n}", "{header:n}.json",
                                           "{header:n}{header:n}", "a.{header:n}.b"};
        int rc = name_of(srcs[i % 5], v, out);
        if (rc != 0 || !safe_name(out)) {
            all_safe = 0;
            diag("value #%d gave rc=%d name '%s'", i, rc, out);
        }
    }
    ok(all_safe, "3000 random hostile values all give safe names");
}

int main(void)
{
    msg = esb_msg_new();
    test_placeholders();
    test_cap();
    test_compile_errors();
    test_filenames();
    esb_msg_unref(msg);
    return tap_done();
}

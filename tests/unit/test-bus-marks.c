/* test-bus-marks.c - bounded mark sets (esb_txn_mark_unique_bounded, the
 * primitive of <dedupe max-keys>): a set keeps its max_keys most recent
 * marks, a new one makes it forget the oldest; a forgotten key can be
 * marked again, a kept one cannot; the same after a restart and after
 * compaction copied the marks forward (and the first segments are gone);
 * other sets and unbounded marks are not touched; a lower bound forgets
 * at once. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../tap.h"
#include "bus.h"
#include "log.h"
#include "msg.h"

static char dir[64];
#define SET    "dedupe:r"
#define HOUR   3600000ULL
#define SETLEN (sizeof(SET) - 1)

static struct esb_bus *open_bus(struct esb_bus_opts *o)
{
    struct esb_bus *bus;
    struct esb_err err = {0};
    struct esb_bus_opts def = {0};
    if (!o) o = &def;
    o->dir = dir;
    if (esb_bus_open(o, &bus, &err) != 0) bail("open: %s", err.msg);
    return bus;
}

/* Mark SET:k in the set bounded to max; returns the commit's result. */
static int mark(struct esb_bus *bus, const char *k, uint32_t max)
{
    char key[64];
    snprintf(key, sizeof(key), SET ":%s", k);
    struct esb_txn *t = esb_txn_new();
    esb_txn_mark_unique_bounded(t, key, SETLEN, max, esb_now_ms() + HOUR);
    struct esb_err err;
    int rc = esb_bus_commit(bus, t, &err);
    esb_txn_free(t);
    return rc;
}

/* The keys of a..z (SET:a...) marked now, as "a,c,d". */
static void marked(struct esb_bus *bus, const char *prefix, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (char c = 'a'; c <= 'z'; c++) {
        char key[64];
        snprintf(key, sizeof(key), "%s:%c", prefix, c);
        if (esb_bus_marked(bus, key))
            n += (size_t)snprintf(out + n, cap - n, "%s%c", n ? "," : "", c);
    }
}

static uint64_t forgotten(struct esb_bus *bus)
{
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    return st.marks_forgotten;
}

static void test_bound(void)
{
    char got[128];
    struct esb_bus *bus = open_bus(NULL);
    ok(mark(bus, "a", 3) == 0 && mark(bus, "b", 3) == 0 && mark(bus, "c", 3) == 0,
       "max 3: a, b, c marked");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "a,b,c") == 0 && forgotten(bus) == 0, "all three kept (%s)", got);
    ok(mark(bus, "d", 3) == 0, "d marked");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "b,c,d") == 0 && forgotten(bus) == 1,
       "the 4th key made the set forget the oldest, a (%s; forgotten %llu)", got,
       (unsigned long long)forgotten(bus));
    ok(mark(bus, "a", 3) == 0, "a can be marked again (a repeat of a forgotten key is new)");
    ok(mark(bus, "d", 3) == ESB_EEXIST && mark(bus, "c", 3) == ESB_EEXIST,
       "c and d, still kept, are refused (EEXIST)");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "a,c,d") == 0 && forgotten(bus) == 2, "now b was forgotten (%s)", got);
    /* An unbounded mark and another set next to it. */
    struct esb_txn *t = esb_txn_new();
    esb_txn_mark_unique(t, SET "x:free", esb_now_ms() + HOUR);
    esb_txn_mark_unique_bounded(t, "other:a", 5, 1, esb_now_ms() + HOUR);
    struct esb_err err;
    ok(esb_bus_commit(bus, t, &err) == 0, "an unbounded mark and one of set 'other' (max 1)");
    esb_txn_free(t);
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "a,c,d") == 0 && esb_bus_marked(bus, SET "x:free") &&
           esb_bus_marked(bus, "other:a"),
       "they do not count in " SET " (%s)", got);
    esb_bus_close(bus);

    bus = open_bus(NULL);
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "a,c,d") == 0 && esb_bus_marked(bus, SET "x:free") &&
           esb_bus_marked(bus, "other:a") && forgotten(bus) == 0,
       "after a restart: the same set (%s), nothing counted as forgotten again", got);
    ok(mark(bus, "b", 3) == 0 && mark(bus, "a", 3) == ESB_EEXIST, "b is new again, a is kept");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "a,b,d") == 0, "b's mark made the set forget c, the oldest (%s)", got);
    ok(mark(bus, "e", 1) == 0, "a mark with a lower bound (1)");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "e") == 0 && forgotten(bus) == 4,
       "forgets every older mark at once (%s; forgotten %llu)", got,
       (unsigned long long)forgotten(bus));
    ok(mark(bus, "f", 3) == 0 && mark(bus, "g", 3) == 0, "back to 3: f, g");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "e,f,g") == 0, "the set grows back to 3, forgotten keys stay forgotten (%s)",
       got);
    esb_bus_close(bus);
    bus = open_bus(NULL);
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "e,f,g") == 0, "the same after another restart (%s)", got);
    esb_bus_close(bus);
}

/* The marks copied forward by compaction; the segments of the first marks
 * (and of the forgotten ones) deleted. */
static void test_compaction(void)
{
    char got[128], cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir %s", dir, dir);
    if (system(cmd) != 0) bail("rm");
    struct esb_bus_opts o = {.segment_size = 4096, .compact_interval_ms = 20};
    struct esb_bus *bus = open_bus(&o);
    for (char c = 'a'; c <= 'h'; c++) {
        char k[2] = {c, 0};
        if (mark(bus, k, 3) != 0) bail("mark %s", k);
    }
    char body[200];
    memset(body, 'k', sizeof(body) - 1);
    body[199] = 0;
    for (int i = 0; i < 200; i++) {
        struct esb_msg *m = esb_msg_new();
        esb_msg_set_body(m, body, strlen(body));
        struct esb_err err;
        struct esb_entry *e;
        if (esb_bus_append(bus, "churn", m, &err) != 0 ||
            esb_bus_consume(bus, "churn", 0, &e) != 0 || esb_bus_ack(bus, e, &err) != 0)
            bail("churn");
        esb_entry_free(e);
        esb_msg_unref(m);
    }
    usleep(300000);
    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    snprintf(cmd, sizeof(cmd), "test -e %s/00000000000000000001.seg", dir);
    ok(st.segments_deleted > 0 && system(cmd) != 0 && st.marks == 3,
       "marks a..h (max 3) in a log whose first segment is deleted; 3 held");
    esb_bus_close(bus);
    bus = open_bus(&o);
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "f,g,h") == 0, "after a restart: the 3 most recent, from their copies (%s)",
       got);
    ok(mark(bus, "i", 3) == 0 && mark(bus, "f", 3) == 0, "i, then f again (forgotten by i)");
    marked(bus, SET, got, sizeof(got));
    ok(strcmp(got, "f,h,i") == 0, "the set's order went on after the restart: g forgotten (%s)",
       got);
    esb_bus_close(bus);
}

int main(void)
{
    esb_log_set_level(ESB_LOG_WARN);
    snprintf(dir, sizeof(dir), "/tmp/esb-test-marks-XXXXXX");
    if (!mkdtemp(dir)) bail("mkdtemp");
    test_bound();
    test_compaction();
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) bail("rm");
    return tap_done();
}

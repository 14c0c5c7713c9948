/* test-wal.c - the log layer alone: record framing, append/read, rolling,
 * recovery visiting every record in order, deleting the oldest segment. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"
#include "log.h"
#include "util.h"
#include "wal.h"

struct seen {
    int n;
    uint32_t lens[4096];
    uint8_t types[4096];
    uint8_t first[4096];
};

static int visit(void *ctx, struct esb_wal_pos pos, uint8_t type, uint8_t flags, const uint8_t *p,
                 uint32_t len)
{
    struct seen *s = ctx;
    if (s->n < 4096) {
        s->lens[s->n] = len;
        s->types[s->n] = type;
        s->first[s->n] = len ? p[0] : 0;
    }
    s->n++;
    return 0;
}

static int append_rec(struct esb_wal *w, uint8_t type, uint8_t fill, uint32_t len,
                      struct esb_wal_pos *pos)
{
    uint8_t *payload = malloc(len ? len : 1), hdr[ESB_WAL_HDR];
    memset(payload, fill, len);
    struct iovec body = {payload, len};
    esb_wal_header(hdr, type, 0, &body, 1);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {payload, len}};
    int rc = esb_wal_append(w, iov, 2, sizeof(hdr) + len, pos);
    free(payload);
    return rc;
}

int main(void)
{
    esb_log_set_level(ESB_LOG_OFF);
    char dir[] = "/tmp/esb-test-wal-XXXXXX";
    if (!mkdtemp(dir)) bail("mkdtemp");
    struct esb_wal *w;
    struct esb_err err;
    struct seen s = {0};
    struct esb_wal_opts o = {.segment_size = 1000};
    struct esb_wal_stats st;
    ok(esb_wal_open(dir, &o, visit, &s, &w, &st, &err) == 0 && s.n == 0, "open empty log");
    struct esb_wal *w2;
    ok(esb_wal_open(dir, &o, visit, &s, &w2, &st, &err) == -EBUSY,
       "a second open of the same directory is refused: %s", err.msg);
    struct esb_wal_pos pos[20];
    int okall = 1;
    for (int i = 0; i < 20; i++)
        okall &= append_rec(w, ESB_REC_MSG + (i % 4), (uint8_t)i, (uint32_t)(i * 17), &pos[i]) == 0;
    ok(okall, "append 20 records");
    ok(esb_wal_sync(w) == 0, "sync");
    ok(esb_wal_active(w) > 1, "rolled to segment %u at 1000 bytes", esb_wal_active(w));
    struct esb_buf b;
    esb_buf_init(&b, 1 << 20);
    uint8_t type, flags;
    ok(esb_wal_read(w, pos[13], &b, &type, &flags) == 0 && b.len == 13 * 17 && b.data[0] == 13 &&
           type == ESB_REC_MSG + 1,
       "read back record 13");
    ok(esb_wal_read(w, (struct esb_wal_pos){pos[13].seg, pos[13].off + 1}, &b, &type, NULL) ==
           ESB_ECORRUPT,
       "read at a wrong offset is detected");
    uint32_t oldest = esb_wal_oldest(w);
    ok(esb_wal_delete_oldest(w) == 0 && esb_wal_oldest(w) == oldest + 1, "delete oldest");
    ok(esb_wal_read(w, pos[0], &b, &type, NULL) == ESB_ENOTFOUND, "deleted segment is gone");
    esb_wal_close(w);

    memset(&s, 0, sizeof(s));
    ok(esb_wal_open(dir, &o, visit, &s, &w, &st, &err) == 0, "reopen");
    int first = 0;
    while (first < 20 && pos[first].seg == oldest) first++;
    int inorder = s.n == 20 - first;
    for (int i = 0; inorder && i < s.n; i++)
        inorder = s.lens[i] == (uint32_t)((first + i) * 17) &&
                  s.types[i] == ESB_REC_MSG + ((first + i) % 4);
    ok(inorder, "recovery visits the %d remaining records in order", 20 - first);
    ok(st.corrupt == 0 && st.truncated_bytes == 0, "clean log: nothing corrupt or cut");
    esb_buf_free(&b);
    esb_wal_close(w);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) bail("rm");
    return tap_done();
}

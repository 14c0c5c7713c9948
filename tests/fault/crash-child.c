/* crash-child.c - the process test-crash kills with SIGKILL.
 *
 * Usage: crash-child DIR RUN
 * Opens the bus on DIR (fsync=always, small segments, frequent maintenance
 * so kills also land in rolls and segment deletions) and starts T threads.
 * Thread k appends to queue "crash" the bodies "r<RUN>-t<k>-<n>" for
 * n = 0, 1, 2, ... and, after each append returned 0, writes that body and
 * '\n' to stdout with one write(2): that line is the acknowledgement the
 * test holds the bus to. It runs until killed (or a generous cap). Exit
 * status: 0 at the cap, 2 when the bus does not open, 3 when an append
 * fails, 4 when stdout is gone. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "msg.h"

#define THREADS 4
#define CAP     200000 /* messages per thread: far more than a run lasts */

static struct esb_bus *bus;
static unsigned long run;

static void *appender(void *arg)
{
    int k = (int)(intptr_t)arg;
    char line[64];
    for (unsigned n = 0; n < CAP; n++) {
        int len = snprintf(line, sizeof(line), "r%lu-t%d-%u", run, k, n);
        struct esb_msg *m = esb_msg_new();
        esb_msg_set_body(m, line, (size_t)len);
        struct esb_err err = {0};
        int rc = esb_bus_append(bus, "crash", m, &err);
        esb_msg_unref(m);
        if (rc != 0) {
            fprintf(stderr, "crash-child: append %s failed: %s\n", line, err.msg);
            _exit(3);
        }
        line[len++] = '\n';
        if (write(STDOUT_FILENO, line, (size_t)len) != len) _exit(4);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: crash-child DIR RUN [PREALLOCATE]\n");
        return 64;
    }
    esb_log_set_level(ESB_LOG_ERROR);
    run = strtoul(argv[2], NULL, 10);
    struct esb_bus_opts o = {
        .dir = argv[1],
        .fsync = ESB_FSYNC_ALWAYS,
        .segment_size = 16 * 1024,
        .compact_interval_ms = 5,
        .preallocate = argc == 4 && strcmp(argv[3], "1") == 0,
    };
    struct esb_err err = {0};
    if (esb_bus_open(&o, &bus, &err) != 0) {
        fprintf(stderr, "crash-child: %s\n", err.msg);
        return 2;
    }
    pthread_t th[THREADS];
    for (int k = 0; k < THREADS; k++)
        if (pthread_create(&th[k], NULL, appender, (void *)(intptr_t)k) != 0) _exit(2);
    for (int k = 0; k < THREADS; k++) pthread_join(th[k], NULL);
    esb_bus_close(bus);
    return 0;
}

/* transform-driver.c - the CPU cost of one route per worker, for
 * bench/transform: loads a config, builds one input message from a file and
 * runs esb_route_run on it in a loop on this one thread, exactly as a
 * worker does between taking an entry and committing its outputs (no bus,
 * no HTTP, no disk). Prints key=value lines:
 *
 *   route=ID messages=N seconds=S rate=MSGS_PER_S us_per_msg=U cpu_seconds=C
 *   cpu_rate=MSGS_PER_CPU_S cpu_us_per_msg=V outputs=K out_bytes=B
 *
 * rate is per second of wall time; cpu_rate per second of this thread's
 * CPU time (CLOCK_THREAD_CPUTIME_ID), which other load on the machine does
 * not change: it is what one worker that has a CPU to itself does. outputs
 * and out_bytes: of one run, as a sanity check of what the route made. A
 * routing error on the first run is printed and exits 1.
 *
 * usage: transform-driver CONFIG ROUTE FILE [--content-type T] [--seconds S]
 *                         [--warmup W] */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>

#include "conf.h"
#include "dryrun.h"
#include "log.h"
#include "msg.h"
#include "route.h"

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: transform-driver CONFIG ROUTE FILE [--content-type T] [--seconds S] "
                    "[--warmup W]\n");
    exit(2);
}

static double arg_seconds(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0 || v > 3600) usage();
    return v;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run r on in for at least secs seconds; returns the number of runs, the
 * elapsed wall time in *elapsed and this thread's CPU time in *cpu. */
static uint64_t loop(const struct esb_route *r, struct esb_route_scratch *s,
                     const struct esb_msg *in, double secs, double *elapsed, double *cpu)
{
    double c0 = cpu_now();
    uint64_t n = 0, t0 = esb_mono_ns(), limit = (uint64_t)(secs * 1e9), now = t0;
    do {
        for (int i = 0; i < 64; i++) {
            struct esb_route_result res;
            memset(&res, 0, sizeof(res));
            esb_route_run(r, s, in, &res);
            esb_route_result_clear(&res);
        }
        n += 64;
        now = esb_mono_ns();
    } while (now - t0 < limit);
    *elapsed = (double)(now - t0) / 1e9;
    *cpu = cpu_now() - c0;
    return n;
}

int main(int argc, char **argv)
{
    const char *ct = NULL;
    double secs = 5, warm = 1;
    const char *pos[3];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--content-type") == 0 && i + 1 < argc)
            ct = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            secs = arg_seconds(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
            warm = arg_seconds(argv[++i]);
        else if (argv[i][0] == '-' || npos == 3)
            usage();
        else
            pos[npos++] = argv[i];
    }
    if (npos != 3 || secs <= 0) usage();
    esb_log_set_level(ESB_LOG_WARN);

    int rc = 1;
    struct esb_config *cfg = NULL;
    struct esb_dryrun *d = NULL;
    struct esb_msg *in = NULL;
    struct esb_route_scratch *s = NULL;
    struct esb_diags diags = {0};
    struct esb_err err = {0};
    if (esb_config_load(pos[0], &cfg, &diags) != 0) {
        for (size_t i = 0; i < diags.n; i++) fprintf(stderr, "%s\n", diags.msgs[i]);
        goto out;
    }
    const struct esb_route *r = esb_config_route(cfg, pos[1]);
    /* esb_dryrun_input builds the message the route's connector would make */
    if (!r || esb_dryrun_new(cfg, pos[1], &d, &err) != 0 ||
        esb_dryrun_input(d, pos[2], ct, &in, &err) != 0) {
        fprintf(stderr, "transform-driver: %s\n", r ? err.msg : "no such route");
        goto out;
    }
    s = esb_route_scratch_new();
    struct esb_route_result res;
    memset(&res, 0, sizeof(res));
    esb_route_run(r, s, in, &res);
    size_t outputs = res.nout, out_bytes = 0;
    for (size_t i = 0; i < res.nout; i++) out_bytes += res.out[i].msg->body->len;
    if (res.error) fprintf(stderr, "transform-driver: routing error: %s\n", res.reason);
    int bad = res.error;
    esb_route_result_clear(&res);
    if (bad) goto out;

    double el, cpu;
    if (warm > 0) loop(r, s, in, warm, &el, &cpu);
    uint64_t n = loop(r, s, in, secs, &el, &cpu);
    printf("route=%s messages=%llu seconds=%.3f rate=%.0f us_per_msg=%.2f cpu_seconds=%.3f "
           "cpu_rate=%.0f cpu_us_per_msg=%.2f outputs=%zu out_bytes=%zu\n",
           pos[1], (unsigned long long)n, el, (double)n / el, el * 1e6 / (double)n, cpu,
           (double)n / cpu, cpu * 1e6 / (double)n, outputs, out_bytes);
    rc = 0;
out:
    esb_route_scratch_free(s);
    esb_msg_unref(in);
    esb_dryrun_free(d);
    esb_config_unref(cfg);
    esb_diags_free(&diags);
    xmlCleanupParser();
    return rc;
}

/* esbd.c - the esb daemon: loads the XML config, opens the durable bus,
 * runs routes and connectors in the foreground until SIGTERM or SIGINT.
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked in the main thread before
 * any other thread exists, so every thread inherits the mask and the main
 * thread alone takes them with sigwait(3). SIGHUP reloads the config file:
 * if the new file has errors they are logged (file:line) and the running
 * config stays; otherwise the new routes take over without losing anything.
 * With <admin>, the admin API (admin.h) starts after the runtime and stops
 * before it; its POST /v1/reload runs the same reload as SIGHUP, and one
 * mutex makes the two take turns (a reload is load + swap, never mixed).
 *
 * Exit codes: 0 clean stop (also --help, --version, a passing --check),
 * 1 start-up failure (config errors, bus open failed, a port in use),
 * 2 bad arguments, 70 fatal bus error while running (e.g. fdatasync failed). */
#include "config.h"

#include "conf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "runtime.h"
#include "util.h"

#define ESBD_EXIT_START 1
#define ESBD_EXIT_USAGE 2
#define ESBD_EXIT_FATAL 70 /* EX_SOFTWARE */

static void usage(FILE *out)
{
    fprintf(out, "Usage: esbd [OPTIONS] CONFIG\n"
                 "Run the esb daemon in the foreground on the XML config CONFIG until\n"
                 "SIGTERM or SIGINT. SIGHUP reloads CONFIG.\n"
                 "\n"
                 "Options:\n"
                 "  --data DIR         bus directory (overrides <bus dir>)\n"
                 "  --fsync POLICY     always, never, or interval:N (overrides <bus fsync>)\n"
                 "  --log-level LEVEL  debug, info, warn, error or off (overrides <log level>)\n"
                 "  --check            check CONFIG, print its errors (file:line) and exit\n"
                 "  --help             print this help and exit\n"
                 "  --version          print the version and exit\n"
                 "\n"
                 "Exit status: 0 stopped cleanly (or CONFIG is valid with --check), 1 could\n"
                 "not start (config errors, bus or endpoint failed), 2 bad arguments, 70 fatal\n"
                 "bus error while running.\n");
}

static _Noreturn void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "esbd: %s%s%s\nTry 'esbd --help' for more information.\n", what,
            arg ? ": " : "", arg ? arg : "");
    exit(ESBD_EXIT_USAGE);
}

static void on_fatal(void *ctx, const char *why)
{
    (void)ctx;
    esb_error("esbd fatal bus error, exiting: %s", why);
    _exit(ESBD_EXIT_FATAL);
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "?";
    }
}

/* Load path, logging every diagnostic. NULL on errors; then, if keep is
 * not NULL, the diagnostics are also handed to it. */
static struct esb_config *load(const char *path, const char *what, struct esb_diags *keep)
{
    struct esb_config *cfg = NULL;
    struct esb_diags d = {0};
    if (esb_config_load(path, &cfg, &d) != 0) {
        for (size_t i = 0; i < d.n; i++) esb_error("%s: %s", what, d.msgs[i]);
        esb_error("%s: %s has %zu error%s; %s", what, path, d.n, d.n == 1 ? "" : "s",
                  strcmp(what, "reload") == 0 ? "the running config stays in force"
                                              : "not started");
        if (keep) {
            for (size_t i = 0; i < d.n; i++) esb_diag_add(keep, NULL, 0, NULL, "%s", d.msgs[i]);
        }
    }
    esb_diags_free(&d);
    return cfg;
}

/* Apply command-line overrides to a freshly loaded (unshared) config. */
static void override(struct esb_config *cfg, const char *data, int fsync, unsigned fsync_ms)
{
    if (data) {
        free(cfg->bus.dir);
        cfg->bus.dir = esb_strdup(data);
    }
    if (fsync >= 0) {
        cfg->bus.fsync = fsync;
        cfg->bus.fsync_interval_ms = fsync_ms;
    }
}

/* What a reload needs; lock makes SIGHUP and admin reloads take turns. */
struct reloader {
    pthread_mutex_t lock;
    struct esb_runtime *rt;
    const char *config, *data;
    int fsync; /* -1: no --fsync override */
    unsigned fsync_ms;
    char *admin_listen, *admin_token_file; /* as started (NULL: no admin API) */
};

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Reload the config file; on failure the running config stays and d (if
 * not NULL) receives every problem. Returns 0 or negative. */
static int reload_config(struct reloader *r, struct esb_diags *d)
{
    struct esb_err err = {0};
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    struct esb_config *next = load(r->config, "reload", d);
    if (!next) {
        rc = ESB_EINVAL;
        goto out;
    }
    override(next, r->data, r->fsync, r->fsync_ms);
    rc = esb_runtime_reload(r->rt, next, &err);
    if (rc < 0) {
        esb_error("reload: %s; the running config stays in force", err.msg);
        esb_diag_add(d, NULL, 0, NULL, "%s", err.msg[0] ? err.msg : esb_strerror(rc));
    } else if (!same_str(next->admin.enabled ? next->admin.listen : NULL, r->admin_listen) ||
               !same_str(next->admin.enabled ? next->admin.token_file : NULL,
                         r->admin_token_file)) {
        esb_warn("reload: <admin> changed; the admin API keeps its settings until esbd restarts");
    }
    esb_config_unref(next);
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* esb_admin_reload_fn: POST /v1/reload. */
static int admin_reload(void *ctx, struct esb_diags *d)
{
    return reload_config(ctx, d);
}

int main(int argc, char **argv)
{
    enum { OPT_DATA = 256, OPT_FSYNC, OPT_LOG_LEVEL, OPT_CHECK, OPT_HELP, OPT_VERSION };
    static const struct option long_opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"check", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *data = NULL, *fsync_arg = NULL, *config = NULL;
    enum esb_fsync_policy fsync = ESB_FSYNC_ALWAYS;
    unsigned fsync_ms = 0;
    int check = 0, level = -1;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA:
            if (optarg[0] == '\0') usage_error("--data needs a directory", NULL);
            data = optarg;
            break;
        case OPT_FSYNC:
            if (esb_fsync_parse(optarg, &fsync, &fsync_ms) != 0)
                usage_error("bad --fsync (want always, never or interval:N, N in ms 1..60000)",
                            optarg);
            fsync_arg = optarg;
            break;
        case OPT_LOG_LEVEL:
            level = esb_log_parse_level(optarg);
            if (level < 0)
                usage_error("bad --log-level (want debug, info, warn, error or off)", optarg);
            break;
        case OPT_CHECK:
            check = 1;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("esbd %s\n", PACKAGE_VERSION);
            return 0;
        case ':':
            usage_error("option needs an argument", argv[optind - 1]);
        default:
            usage_error("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) config = argv[optind++];
    if (optind < argc) usage_error("too many arguments", argv[optind]);
    if (!config) usage_error("a CONFIG file is required", NULL);
    if (level >= 0) esb_log_set_level((enum esb_log_level)level);

    struct esb_config *cfg = load(config, check ? "check" : "start", NULL);
    if (!cfg) return ESBD_EXIT_START;
    if (check) {
        printf("%s: OK (%zu routes, %zu endpoints)\n", config, cfg->nroutes, cfg->nendpoints);
        esb_config_unref(cfg);
        return 0;
    }
    if (level < 0 && cfg->log_level) {
        int l = esb_log_parse_level(cfg->log_level);
        if (l >= 0) esb_log_set_level((enum esb_log_level)l);
    }
    override(cfg, data, fsync_arg ? (int)fsync : -1, fsync_ms);

    /* Block the signals we wait for before any thread exists. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    int rc = pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (rc != 0) {
        esb_error("esbd cannot block signals: %s", strerror(rc));
        esb_config_unref(cfg);
        return ESBD_EXIT_START;
    }

    struct esb_runtime *rt = NULL;
    struct esb_err err = {0};
    rc = esb_runtime_start(cfg, on_fatal, NULL, &rt, &err);
    if (rc < 0) {
        esb_error("esbd cannot start: %s", err.msg[0] ? err.msg : esb_strerror(rc));
        esb_config_unref(cfg);
        return ESBD_EXIT_START;
    }
    struct reloader rl = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .rt = rt,
        .config = config,
        .data = data,
        .fsync = fsync_arg ? (int)fsync : -1,
        .fsync_ms = fsync_ms,
        .admin_listen = cfg->admin.enabled ? esb_strdup(cfg->admin.listen) : NULL,
        .admin_token_file = cfg->admin.enabled ? esb_strdup(cfg->admin.token_file) : NULL,
    };
    struct esb_admin *admin = NULL;
    rc = esb_admin_start(cfg, rt, admin_reload, &rl, &admin, &err);
    if (rc < 0) {
        esb_error("esbd cannot start: %s", err.msg[0] ? err.msg : esb_strerror(rc));
        esb_runtime_stop(rt);
        esb_config_unref(cfg);
        free(rl.admin_listen);
        free(rl.admin_token_file);
        return ESBD_EXIT_START;
    }
    struct esb_bus_stats st;
    esb_bus_get_stats(esb_runtime_bus(rt), &st);
    esb_info("esbd ready config=%s bus=%s routes=%zu records=%" PRIu64 " entries=%" PRIu64
             " corrupt=%" PRIu64 " truncated_bytes=%" PRIu64 " pid=%ld",
             config, cfg->bus.dir, cfg->nroutes, st.recovered_records, st.recovered_entries,
             st.recovered_corrupt, st.recovered_truncated_bytes, (long)getpid());
    esb_config_unref(cfg);

    for (;;) {
        int sig;
        rc = sigwait(&sigs, &sig);
        if (rc != 0) {
            esb_error("esbd sigwait failed: %s", strerror(rc));
            break;
        }
        if (sig == SIGHUP) {
            esb_info("esbd signal=SIGHUP reloading config=%s", config);
            (void)reload_config(&rl, NULL);
            continue;
        }
        esb_info("esbd stopping signal=%s", signame(sig));
        break;
    }
    esb_admin_stop(admin); /* before the runtime its requests use */
    esb_runtime_stop(rt);
    free(rl.admin_listen);
    free(rl.admin_token_file);
    esb_info("esbd stopped");
    return rc == 0 ? 0 : ESBD_EXIT_START;
}

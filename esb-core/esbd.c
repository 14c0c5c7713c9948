/* esbd.c - the esb daemon: opens the durable bus and runs in the foreground
 * until SIGTERM or SIGINT.
 *
 * For now (config loading arrives in a later issue) the CONFIG argument is
 * only checked to be readable; the bus options come from the command line.
 *
 * Signals: SIGTERM, SIGINT and SIGHUP are blocked in the main thread before
 * the bus is opened, so every thread the bus starts inherits the mask and
 * the main thread alone takes them with sigwait(3).
 *
 * Exit codes: 0 clean stop (also --help, --version, a passing --check),
 * 1 start-up failure (unreadable config, bus directory or bus open failed),
 * 2 bad arguments, 70 fatal bus error while running (e.g. fdatasync failed). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "util.h"

#define ESBD_DEFAULT_DATA "var/bus"
#define ESBD_EXIT_START   1
#define ESBD_EXIT_USAGE   2
#define ESBD_EXIT_FATAL   70 /* EX_SOFTWARE */

static void usage(FILE *out)
{
    fprintf(out, "Usage: esbd [OPTIONS] [CONFIG]\n"
                 "Run the esb daemon in the foreground until SIGTERM or SIGINT.\n"
                 "\n"
                 "Options:\n"
                 "  --data DIR         bus directory (default: " ESBD_DEFAULT_DATA
                 ", created with parents if missing)\n"
                 "  --fsync POLICY     always (default), never, or interval:N (N ms, 1..60000)\n"
                 "  --log-level LEVEL  debug, info (default), warn, error or off\n"
                 "  --check            check CONFIG and exit (for now: only that it is readable)\n"
                 "  --help             print this help and exit\n"
                 "  --version          print the version and exit\n"
                 "\n"
                 "CONFIG is the XML configuration file. Config loading is not implemented\n"
                 "yet: CONFIG is only checked to be readable, and the bus options come from\n"
                 "the options above.\n"
                 "\n"
                 "Exit status: 0 stopped cleanly, 1 could not start, 2 bad arguments,\n"
                 "70 fatal bus error while running.\n");
}

static _Noreturn void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "esbd: %s%s%s\nTry 'esbd --help' for more information.\n", what,
            arg ? ": " : "", arg ? arg : "");
    exit(ESBD_EXIT_USAGE);
}

/* Create dir and its missing parents (mkdir -p). Returns 0 or -errno. */
static int mkdir_p(const char *dir)
{
    char *path = esb_strdup(dir);
    size_t len = strlen(path);
    int rc = 0;
    while (len > 1 && path[len - 1] == '/') path[--len] = '\0';
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            rc = -errno;
            goto out;
        }
        *p = '/';
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        rc = -errno;
    else if (!S_ISDIR(st.st_mode))
        rc = -ENOTDIR;
out:
    free(path);
    return rc;
}

/* Check that the config file exists, is a regular file and can be read.
 * Returns 0, or -errno (-EISDIR / -EINVAL for a directory / special file). */
static int config_readable(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (S_ISDIR(st.st_mode))
        rc = -EISDIR;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    close(fd);
    return rc;
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
    const char *data = ESBD_DEFAULT_DATA;
    const char *config = NULL;
    enum esb_fsync_policy fsync = ESB_FSYNC_ALWAYS;
    unsigned fsync_ms = 0;
    int check = 0;
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
            break;
        case OPT_LOG_LEVEL: {
            int level = esb_log_parse_level(optarg);
            if (level < 0)
                usage_error("bad --log-level (want debug, info, warn, error or off)", optarg);
            esb_log_set_level((enum esb_log_level)level);
            break;
        }
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

    if (config) {
        int rc = config_readable(config);
        if (rc < 0) {
            fprintf(stderr, "esbd: cannot read config %s: %s\n", config, esb_strerror(rc));
            return ESBD_EXIT_START;
        }
    }
    if (check) {
        if (!config) usage_error("--check needs a CONFIG file", NULL);
        printf("%s: readable (config validation is not implemented yet)\n", config);
        return 0;
    }

    /* Block the signals we wait for before any thread exists. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    int rc = pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (rc != 0) {
        esb_error("esbd cannot block signals: %s", strerror(rc));
        return ESBD_EXIT_START;
    }

    if (config)
        esb_info("esbd config=%s is not loaded: config loading is not implemented yet, "
                 "bus options come from the command line",
                 config);

    rc = mkdir_p(data);
    if (rc < 0) {
        esb_error("esbd cannot create bus directory dir=%s: %s", data, esb_strerror(rc));
        return ESBD_EXIT_START;
    }

    struct esb_bus_opts opts = {
        .dir = data,
        .fsync = fsync,
        .fsync_interval_ms = fsync_ms,
        .on_fatal = on_fatal,
    };
    struct esb_bus *bus = NULL;
    struct esb_err err = {0};
    rc = esb_bus_open(&opts, &bus, &err);
    if (rc < 0) {
        esb_error("esbd cannot open bus dir=%s: %s", data, err.msg[0] ? err.msg : esb_strerror(rc));
        return ESBD_EXIT_START;
    }

    char fsync_str[32] = "always";
    if (fsync == ESB_FSYNC_NEVER)
        snprintf(fsync_str, sizeof(fsync_str), "never");
    else if (fsync == ESB_FSYNC_INTERVAL)
        snprintf(fsync_str, sizeof(fsync_str), "interval:%u", fsync_ms);

    struct esb_bus_stats st;
    esb_bus_get_stats(bus, &st);
    esb_info("esbd ready bus=%s records=%" PRIu64 " entries=%" PRIu64 " corrupt=%" PRIu64
             " truncated_bytes=%" PRIu64 " fsync=%s pid=%ld",
             data, st.recovered_records, st.recovered_entries, st.recovered_corrupt,
             st.recovered_truncated_bytes, fsync_str, (long)getpid());

    for (;;) {
        int sig;
        rc = sigwait(&sigs, &sig);
        if (rc != 0) {
            esb_error("esbd sigwait failed: %s", strerror(rc));
            break;
        }
        if (sig == SIGHUP) {
            esb_warn("esbd signal=SIGHUP reload not yet supported");
            continue;
        }
        esb_info("esbd stopping signal=%s", signame(sig));
        break;
    }

    esb_bus_close(bus);
    esb_info("esbd stopped");
    return rc == 0 ? 0 : ESBD_EXIT_START;
}

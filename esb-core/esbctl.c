/* esbctl.c - the operator's tool: main, global options, and the commands
 * that work without a running esbd.
 *
 *   esbctl check FILE            load and check a config file, print its errors
 *   esbctl config-doc            print the config reference (docs/config.md)
 *   esbctl queues --data DIR     list the queues of a bus directory (offline)
 *   esbctl browse QUEUE [--data DIR] [--limit N]
 *                                print a queue's entries as JSON lines (offline)
 *   esbctl test FILE --route ID (--message F [--header K=V]... | --dir D [--update])
 *                                dry-run messages through a route (dryrun.c)
 *
 * The offline commands open the bus directory themselves, read-write,
 * exactly as esbd does (recovery runs and may cut a torn tail), so esbd must
 * NOT be running on that directory (its LOCK refuses). The commands for a
 * running esbd (status, queues without --data, dlq, reload) go through its
 * admin API: esbctl_admin.c.
 *
 * Exit codes: 0 ok, 1 the command failed (for check: the config has errors),
 * 2 bad arguments or unknown command, 3 not found (admin commands: no such
 * queue or entry), 70 fatal bus error. */
#include "config.h"

#include "conf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/parser.h>

#include "admin.h"
#include "bus.h"
#include "dryrun.h"
#include "esbctl.h"
#include "msg.h"
#include "log.h"
#include "queue_list.h"
#include "util.h"

#define ESBCTL_DEFAULT_DATA "var/bus"

void esbctl_usage(FILE *out)
{
    fprintf(out,
            "Usage: esbctl [--help | --version]\n"
            "       esbctl [--admin URL] [--token-file F] [--config FILE] COMMAND [OPTIONS]\n"
            "\n"
            "Commands for a running esbd, through its admin API:\n"
            "  status               is esbd up? (its version and pid)\n"
            "  queues               list the bus queues: entries, ready, inflight,\n"
            "                       waiting, bytes.\n"
            "  dlq list QUEUE [--filter TEXT] [--limit N]\n"
            "                       the entries of a dead-letter queue: seq, id, attempt,\n"
            "                       age and reason (only those whose reason contains TEXT;\n"
            "                       at most N, default 100).\n"
            "  dlq show QUEUE SEQ [--json]\n"
            "                       one entry with its reason, headers and whole body.\n"
            "  dlq replay QUEUE (--id SEQ | --all) [--filter TEXT] [--to QUEUE]\n"
            "                       send dead letters back to the queue they died in (or\n"
            "                       to the bus queue --to, e.g. queue:NAME); each leaves\n"
            "                       the DLQ in the same transaction, so at most once.\n"
            "  dlq purge QUEUE (--id SEQ | --all) [--filter TEXT]\n"
            "                       delete dead letters.\n"
            "  reload               make esbd reload its config file (as SIGHUP); prints\n"
            "                       the errors (FILE:LINE) if the new file is refused.\n"
            "Where the admin API is: --admin URL, else <admin listen> of --config FILE,\n"
            "else http://127.0.0.1:9090. The token: --token-file F, else <admin\n"
            "token-file> of --config FILE, else var/admin.token (relative to the\n"
            "working directory, as for esbd). These options may also follow COMMAND.\n"
            "\n"
            "Commands without esbd:\n"
            "  check FILE           load and check the config FILE as esbd would (parse,\n"
            "                       includes, ${ENV}, schema, attributes, routes); print\n"
            "                       \"FILE: OK (N routes, M endpoints)\" or every error as\n"
            "                       FILE:LINE: element <x>: message, on stderr.\n"
            "  config-doc           print the configuration reference (markdown; the\n"
            "                       text of docs/config.md).\n"
            "  queues --data DIR    list the queues of the bus in DIR, read from disk.\n"
            "                       esbd must not be running on DIR.\n"
            "  browse QUEUE [--data DIR] [--limit N]\n"
            "                       print the entries of QUEUE in DIR (default " ESBCTL_DEFAULT_DATA
            ")\n"
            "                       (at most N, default 1000) as JSON lines: seq, id,\n"
            "                       attempt, reason and origin for dead letters, headers\n"
            "                       and the first 1 KiB of the body. esbd must not be\n"
            "                       running on DIR.\n"
            "  test FILE --route ID --message F [--header NAME=VALUE]... [--content-type T]\n"
            "                       dry-run: run the message in F through route ID of the\n"
            "                       config FILE without the bus or any endpoint; print each\n"
            "                       step, the branch each choice took, what each transform\n"
            "                       returned and where each output would go. Exit 1 on a\n"
            "                       routing error (the reason is printed).\n"
            "  test FILE --route ID --dir D [--update] [--content-type T]\n"
            "                       golden files: run every D/NAME.in (headers from\n"
            "                       D/NAME.headers) and compare the outputs with\n"
            "                       D/NAME.expected; PASS/FAIL per case, exit 1 if any\n"
            "                       failed. --update writes the .expected files instead.\n"
            "\n"
            "Exit status: 0 ok, 1 the command failed (check: the config has errors;\n"
            "admin API unreachable, wrong token, request refused), 2 bad arguments,\n"
            "3 no such queue or entry, 70 fatal bus error.\n");
}

static void on_fatal(void *ctx, const char *why)
{
    (void)ctx;
    esb_error("esbctl fatal bus error, exiting: %s", why);
    _exit(ESBCTL_EXIT_FATAL);
}

/* ---- queues ---- */

/* Open the existing bus in data (never create one). NULL on error, printed. */
static struct esb_bus *open_existing_bus(const char *data)
{
    /* Never create a bus by accident: the directory must exist. */
    struct stat st;
    if (stat(data, &st) < 0) {
        fprintf(stderr, "esbctl: no bus directory %s: %s\n", data, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "esbctl: %s is not a directory\n", data);
        return NULL;
    }
    struct esb_bus_opts opts = {.dir = data, .fsync = ESB_FSYNC_ALWAYS, .on_fatal = on_fatal};
    struct esb_bus *bus = NULL;
    struct esb_err err = {0};
    int rc = esb_bus_open(&opts, &bus, &err);
    if (rc < 0) {
        fprintf(stderr, "esbctl: cannot open bus %s: %s\n", data,
                err.msg[0] ? err.msg : esb_strerror(rc));
        return NULL;
    }
    return bus;
}

static int cmd_queues(int argc, char **argv)
{
    enum { OPT_DATA = 256 };
    static const struct option long_opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"help", no_argument, NULL, 'h'},
        ESBCTL_CONN_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *data = NULL;

    esbctl_opts_begin();
    while (esbctl_getopt(argc, argv, ":h", long_opts) == OPT_DATA) {
        if (optarg[0] == '\0') esbctl_usage_error("--data needs a directory", NULL);
        data = optarg;
    }
    if (optind < argc) esbctl_usage_error("queues takes no arguments", argv[optind]);
    if (!data) return esbctl_queues_online();

    struct esb_bus *bus = open_existing_bus(data);
    if (!bus) return ESBCTL_EXIT_FAIL;

    struct esb_queue_list l = {0};
    esb_queue_list_get(bus, &l);
    esb_bus_close(bus);

    int w = (int)strlen("QUEUE");
    for (size_t i = 0; i < l.n; i++) {
        size_t len = strlen(l.v[i].name);
        if (len > (size_t)w) w = len > 200 ? 200 : (int)len;
    }
    printf("%-*s %12s %12s %12s %14s\n", w, "QUEUE", "ENTRIES", "READY", "WAITING", "BYTES");
    for (size_t i = 0; i < l.n; i++) {
        const struct esb_queue_info *r = &l.v[i];
        printf("%-*s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %14" PRIu64 "\n", w, r->name,
               r->entries, r->ready, r->waiting, r->bytes);
    }
    esb_queue_list_free(&l);
    return esbctl_flush_stdout();
}

/* ---- browse ---- */

struct browse_ctx {
    long limit, shown;
};

/* Print one entry as a JSON line: the metadata, headers and a body excerpt
 * (first 1 KiB; bytes that are not printable ASCII shown as '.'). */
static int print_entry(void *ctx, const struct esb_entry *e)
{
    struct browse_ctx *b = ctx;
    const struct esb_msg *m = e->msg;
    json_t *o = json_object(), *h = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
    json_object_set_new(o, "id", json_string(m->id_text));
    json_object_set_new(o, "queue", json_string(e->queue));
    json_object_set_new(o, "attempt", json_integer(e->attempt));
    json_object_set_new(o, "enqueued_ms", json_integer((json_int_t)e->enqueued_ms));
    if (e->reason) json_object_set_new(o, "reason", json_string(e->reason));
    if (e->dead_from) json_object_set_new(o, "dead_from", json_string(e->dead_from));
    if (e->ntries) json_object_set_new(o, "history", esb_admin_history_json(e));
    json_object_set_new(o, "content_type", json_string(m->content_type));
    for (size_t i = 0; i < m->nheaders; i++)
        json_object_set_new(h, m->headers[i].name, json_string(m->headers[i].value));
    json_object_set_new(o, "headers", h);
    size_t n = m->body->len < 1024 ? m->body->len : 1024;
    char *ex = esb_malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = m->body->data[i];
        ex[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    ex[n] = '\0';
    json_object_set_new(o, "body_bytes", json_integer((json_int_t)m->body->len));
    json_object_set_new(o, "body", json_string(ex));
    free(ex);
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) puts(line);
    free(line);
    json_decref(o);
    return ++b->shown >= b->limit;
}

static int cmd_browse(int argc, char **argv)
{
    enum { OPT_DATA = 256, OPT_LIMIT };
    static const struct option long_opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data = ESBCTL_DEFAULT_DATA;
    struct browse_ctx b = {.limit = 1000};
    int c;
    esbctl_opts_begin();
    while ((c = esbctl_getopt(argc, argv, ":h", long_opts)) != -1) {
        switch (c) {
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_LIMIT: {
            char *end;
            b.limit = strtol(optarg, &end, 10);
            if (*end || b.limit < 1) esbctl_usage_error("--limit needs a positive number", optarg);
            break;
        }
        }
    }
    if (optind + 1 != argc) esbctl_usage_error("browse takes one QUEUE", NULL);
    const char *queue = argv[optind];
    struct esb_bus *bus = open_existing_bus(data);
    if (!bus) return ESBCTL_EXIT_FAIL;
    int rc = esb_bus_browse(bus, queue, print_entry, &b);
    esb_bus_close(bus);
    if (rc == ESB_ENOTFOUND) {
        fprintf(stderr, "esbctl: no queue %s in %s\n", queue, data);
        return ESBCTL_EXIT_FAIL;
    }
    return rc < 0 ? ESBCTL_EXIT_FAIL : 0;
}

/* ---- check, config-doc ---- */

/* Parse a command's options, of which there is only --help; they end at the
 * first argument. */
static void help_only(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    esbctl_opts_begin();
    (void)esbctl_getopt(argc, argv, "+:h", long_opts); /* -1: it handles the rest */
}

static int cmd_check(int argc, char **argv)
{
    help_only(argc, argv);
    if (optind >= argc) esbctl_usage_error("check needs a config FILE", NULL);
    if (optind + 1 < argc) esbctl_usage_error("check takes one FILE", argv[optind + 1]);
    const char *path = argv[optind];

    struct esb_config *cfg = NULL;
    struct esb_diags d = {0};
    if (esb_config_load(path, &cfg, &d) < 0) {
        for (size_t i = 0; i < d.n; i++) fprintf(stderr, "%s\n", d.msgs[i]);
        esb_diags_free(&d);
        return ESBCTL_EXIT_FAIL;
    }
    printf("%s: OK (%zu routes, %zu endpoints)\n", path, cfg->nroutes, cfg->nendpoints);
    esb_config_unref(cfg);
    esb_diags_free(&d);
    return esbctl_flush_stdout();
}

static void emit_stdout(void *ctx, const char *text)
{
    (void)ctx;
    fputs(text, stdout);
}

static int cmd_config_doc(int argc, char **argv)
{
    help_only(argc, argv);
    if (optind < argc) esbctl_usage_error("config-doc takes no arguments", argv[optind]);
    esb_config_doc(emit_stdout, NULL);
    return esbctl_flush_stdout();
}

/* ---- test (dry run) ---- */

static int cmd_test(int argc, char **argv)
{
    enum { OPT_ROUTE = 256, OPT_MESSAGE, OPT_HEADER, OPT_CT, OPT_DIR, OPT_UPDATE };
    static const struct option long_opts[] = {
        {"route", required_argument, NULL, OPT_ROUTE},
        {"message", required_argument, NULL, OPT_MESSAGE},
        {"header", required_argument, NULL, OPT_HEADER},
        {"content-type", required_argument, NULL, OPT_CT},
        {"dir", required_argument, NULL, OPT_DIR},
        {"update", no_argument, NULL, OPT_UPDATE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *route = NULL, *message = NULL, *ct = NULL, *dir = NULL;
    char **headers = esb_calloc((size_t)argc + 1, sizeof(*headers));
    size_t nheaders = 0;
    int update = 0, c, rc = ESBCTL_EXIT_FAIL;
    esbctl_opts_begin();
    while ((c = esbctl_getopt(argc, argv, ":hr:m:H:d:", long_opts)) != -1) {
        switch (c) {
        case 'r':
        case OPT_ROUTE:
            route = optarg;
            break;
        case 'm':
        case OPT_MESSAGE:
            message = optarg;
            break;
        case 'H':
        case OPT_HEADER:
            headers[nheaders++] = optarg;
            break;
        case OPT_CT:
            ct = optarg;
            break;
        case 'd':
        case OPT_DIR:
            dir = optarg;
            break;
        case OPT_UPDATE:
            update = 1;
            break;
        }
    }
    if (optind + 1 != argc) esbctl_usage_error("test takes one config FILE", NULL);
    if (!route) esbctl_usage_error("test needs --route ID", NULL);
    if (!message == !dir) esbctl_usage_error("test needs either --message FILE or --dir DIR", NULL);
    if (update && !dir) esbctl_usage_error("--update goes with --dir", NULL);
    if (nheaders && !message) esbctl_usage_error("--header goes with --message", NULL);

    struct esb_config *cfg = NULL;
    struct esb_dryrun *d = NULL;
    struct esb_diags diags = {0};
    struct esb_err err = {0};
    if (esb_config_load(argv[optind], &cfg, &diags) < 0) {
        for (size_t i = 0; i < diags.n; i++) fprintf(stderr, "%s\n", diags.msgs[i]);
        goto out;
    }
    if (esb_dryrun_new(cfg, route, &d, &err) < 0) {
        fprintf(stderr, "esbctl: %s\n", err.msg);
        goto out;
    }
    int r = message ? esb_dryrun_message(d, message, ct, headers, nheaders, stdout, &err)
                    : esb_dryrun_dir(d, dir, ct, update, stdout, &err);
    if (r < 0)
        fprintf(stderr, "esbctl: %s\n", err.msg);
    else if (r == 0)
        rc = 0;
    if (esbctl_flush_stdout()) rc = ESBCTL_EXIT_FAIL;
out:
    esb_dryrun_free(d);
    esb_config_unref(cfg);
    esb_diags_free(&diags);
    free(headers);
    return rc;
}

/* ---- main ---- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"check", cmd_check},          {"config-doc", cmd_config_doc},
    {"queues", cmd_queues},        {"browse", cmd_browse},
    {"status", esbctl_cmd_status}, {"dlq", esbctl_cmd_dlq},
    {"reload", esbctl_cmd_reload}, {"test", cmd_test},
};

/* Run command argv[0]; the caller cleans up the libraries afterwards. */
static int run(int argc, char **argv)
{
    for (size_t i = 0; i < ESB_ARRAY_LEN(commands); i++)
        if (strcmp(argv[0], commands[i].name) == 0) return commands[i].run(argc, argv);
    esbctl_usage_error("unknown command", argv[0]);
}

int main(int argc, char **argv)
{
    /* Keep stdout for the command's output; recovery notes below warn stay quiet. */
    esb_log_set_level(ESB_LOG_WARN);

    /* Global options, up to the command (the '+' stops there). */
    static const struct option global_opts[] = {
        ESBCTL_CONN_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    esbctl_opts_begin();
    if (esbctl_getopt(argc, argv, "+:h", global_opts) == 'V') {
        printf("esbctl %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (optind >= argc) esbctl_usage_error("missing command", NULL);
    if (strcmp(argv[optind], "help") == 0) {
        esbctl_usage(stdout);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(argc - optind, argv + optind);
    curl_global_cleanup();
    xmlCleanupParser();
    return rc;
}

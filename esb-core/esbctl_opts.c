/* esbctl_opts.c - the command-line conventions every esbctl command shares
 * (esbctl.h): the option loop with -h/--help and usage errors, the
 * connection options of the admin commands, and flushing the output into
 * an exit code. Part of the esbctl program, not of libesb. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esbctl.h"

struct esbctl_conn esbctl_conn;

_Noreturn void esbctl_usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "esbctl: %s%s%s\nTry 'esbctl --help' for more information.\n", what,
            arg ? ": " : "", arg ? arg : "");
    exit(ESBCTL_EXIT_USAGE);
}

int esbctl_conn_option(int c, const char *arg)
{
    switch (c) {
    case ESBCTL_OPT_ADMIN:
        if (!arg[0]) esbctl_usage_error("--admin needs a URL", NULL);
        esbctl_conn.admin = arg;
        return 1;
    case ESBCTL_OPT_TOKEN_FILE:
        if (!arg[0]) esbctl_usage_error("--token-file needs a file", NULL);
        esbctl_conn.token_file = arg;
        return 1;
    case ESBCTL_OPT_CONFIG:
        if (!arg[0]) esbctl_usage_error("--config needs a file", NULL);
        esbctl_conn.config = arg;
        return 1;
    default:
        return 0;
    }
}

void esbctl_opts_begin(void)
{
    optind = 0; /* glibc: restart scanning on the sub-command's argv */
    opterr = 0;
}

int esbctl_getopt(int argc, char **argv, const char *shortopts, const struct option *opts)
{
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, opts, NULL);
        if (c == -1) return -1;
        if (esbctl_conn_option(c, optarg)) continue;
        switch (c) {
        case 'h':
            esbctl_usage(stdout);
            exit(0);
        case ':':
            esbctl_usage_error("option needs an argument", argv[optind - 1]);
        case '?':
            esbctl_usage_error("unknown option", argv[optind - 1]);
        default:
            return c;
        }
    }
}

int esbctl_flush_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "esbctl: writing output failed: %s\n", strerror(errno));
        return ESBCTL_EXIT_FAIL;
    }
    return 0;
}

/* esbctl.h - shared by the files of the esbctl program: esbctl.c (main,
 * the offline commands), esbctl_admin.c (the commands that talk to a
 * running esbd through its admin API) and esbctl_opts.c (option parsing,
 * usage errors, output flushing). Not part of libesb. Single-threaded. */
#ifndef ESBCTL_H
#define ESBCTL_H

#include <stdio.h>

#define ESBCTL_EXIT_FAIL     1
#define ESBCTL_EXIT_USAGE    2
#define ESBCTL_EXIT_NOTFOUND 3
#define ESBCTL_EXIT_FATAL    70 /* EX_SOFTWARE */

/* Where the admin API is: the global options --admin URL, --token-file F
 * and --config FILE (also accepted after an admin command). NULL: not given. */
struct esbctl_conn {
    const char *admin, *token_file, *config;
};
extern struct esbctl_conn esbctl_conn;

/* Long options every admin command accepts, and their handler: returns 1
 * if c was one of them (stored in esbctl_conn), else 0. */
enum { ESBCTL_OPT_ADMIN = 1000, ESBCTL_OPT_TOKEN_FILE, ESBCTL_OPT_CONFIG };
#define ESBCTL_CONN_OPTIONS                                                                        \
    {"admin", required_argument, NULL, ESBCTL_OPT_ADMIN},                                          \
        {"token-file", required_argument, NULL, ESBCTL_OPT_TOKEN_FILE},                            \
    {                                                                                              \
        "config", required_argument, NULL, ESBCTL_OPT_CONFIG                                       \
    }
int esbctl_conn_option(int c, const char *arg);

struct option;
/* Start parsing the options of a command whose argv[0] is the command name
 * (resets getopt; getopt prints nothing). */
void esbctl_opts_begin(void);
/* getopt_long over argv with what every command shares: an option that
 * yields 'h' (-h, or {"help", ..., 'h'}) prints the usage and exits 0; a
 * missing argument (shortopts starts with ':' or "+:") or an unknown option
 * is a usage error (exit 2); the connection options, when opts has them, are
 * stored in esbctl_conn. Returns each other option, -1 at the end. */
int esbctl_getopt(int argc, char **argv, const char *shortopts, const struct option *opts);
/* Flush stdout: 0, or ESBCTL_EXIT_FAIL with the error printed. */
int esbctl_flush_stdout(void);

/* The usage text (esbctl.c). */
void esbctl_usage(FILE *out);
/* "esbctl: what[: arg]" and a hint on stderr, then exit 2. */
_Noreturn void esbctl_usage_error(const char *what, const char *arg);

/* Commands through the admin API (esbctl_admin.c): argv[0] is the command. */
int esbctl_cmd_status(int argc, char **argv);
/* esbctl queues without --data: options already parsed. */
int esbctl_queues_online(void);
int esbctl_cmd_dlq(int argc, char **argv);
int esbctl_cmd_reload(int argc, char **argv);

#endif

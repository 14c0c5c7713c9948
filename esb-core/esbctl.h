/* esbctl.h - shared by the files of the esbctl program: esbctl.c (main,
 * the offline commands) and esbctl_admin.c (the commands that talk to a
 * running esbd through its admin API). Not part of libesb. */
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

void esbctl_usage(FILE *out);
_Noreturn void esbctl_usage_error(const char *what, const char *arg);

/* Commands through the admin API (esbctl_admin.c): argv[0] is the command. */
int esbctl_cmd_status(int argc, char **argv);
/* esbctl queues without --data: options already parsed. */
int esbctl_queues_online(void);
int esbctl_cmd_dlq(int argc, char **argv);
int esbctl_cmd_reload(int argc, char **argv);

#endif

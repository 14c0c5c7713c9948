/* file_in.h - the file-in connector: watches a directory (inotify plus
 * polling), claims each stable matching regular file by renaming it into
 * <dir>/.esb-work/, hands its bytes to the runtime as one message and, once
 * the message is durable, moves the file to done-dir (or to error-dir with
 * a "<name>.reason" file). One thread per endpoint. See docs/connectors.md
 * for the file lifecycle and the crash semantics. */
#ifndef ESB_FILE_IN_H
#define ESB_FILE_IN_H

#include <stdint.h>

#include "connector.h"

/* ep->conf of a file-in endpoint. */
struct esb_file_in_conf {
    char *id;               /* the id attribute (ep->id is the one used) */
    char *dir;              /* watched directory (created if missing) */
    char *pattern;          /* fnmatch glob on the base name */
    char *exclude;          /* fnmatch glob; "" = none */
    char *done_dir;         /* "" = <dir>/done */
    char *error_dir;        /* "" = <dir>/failed */
    uint64_t stable_for;    /* ms a file's size and mtime must stay unchanged */
    uint64_t poll_interval; /* ms between directory scans */
    uint64_t max_file_size; /* bytes */
    char *content_type;
};

/* The name of the claim directory inside dir. */
#define ESB_FILE_IN_WORK_DIR ".esb-work"

extern const struct esb_connector_ops esb_file_in_ops;

#endif

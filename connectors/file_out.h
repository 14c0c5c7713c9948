/* file_out.h - the file-out connector: writes each delivered message body as
 * one file in a directory, atomically (temp file, fdatasync, rename,
 * directory fsync), and confirms the delivery only after that. The file
 * name comes from a template and can never leave the directory.
 * deliver() may be called from many worker threads at once. */
#ifndef ESB_FILE_OUT_H
#define ESB_FILE_OUT_H

#include "connector.h"

/* ep->conf of a file-out endpoint. */
struct esb_file_out_conf {
    char *id;      /* the id attribute (ep->id is the one used) */
    char *dir;     /* output directory, created if missing */
    char *name;    /* file name template, e.g. "{id}.json" */
    int overwrite; /* replace an existing file of that name (else add "-N") */
};

extern const struct esb_connector_ops esb_file_out_ops;

#endif

/* registry.c - the table of every connector, and the names of the failure
 * classes they report (connector.h). Adding a connector is one line here
 * plus its own file pair; nothing else changes. */
#include "config.h"

#include <string.h>

#include "connector.h"
#include "file_in.h"
#include "file_out.h"
#include "http_in.h"
#include "http_out.h"

const struct esb_connector_ops *const esb_connectors[] = {
    &esb_http_in_ops,
    &esb_file_in_ops,
    &esb_file_out_ops,
    &esb_http_out_ops,
    NULL,
};

const struct esb_connector_ops *esb_connector_find(const char *element)
{
    if (!element) return NULL;
    for (size_t i = 0; esb_connectors[i]; i++)
        if (strcmp(esb_connectors[i]->element, element) == 0) return esb_connectors[i];
    return NULL;
}

const char *esb_fail_name(enum esb_fail f, int code)
{
    static const char *const names[] = {
        [ESB_FAIL_STATUS] = "http-status",
        [ESB_FAIL_TIMEOUT] = "timeout",
        [ESB_FAIL_CONNECT] = "connect",
        [ESB_FAIL_TLS] = "tls",
        [ESB_FAIL_IO] = "io",
        [ESB_FAIL_INVALID] = "invalid",
        [ESB_FAIL_ROUTE] = "route",
        [ESB_FAIL_ERROR] = "error",
    };
    if (f > ESB_FAIL_UNSET && f <= ESB_FAIL_ERROR) return names[f];
    if (code == ESB_ETIMEDOUT) return names[ESB_FAIL_TIMEOUT];
    if (code == ESB_EINVAL) return names[ESB_FAIL_INVALID];
    if (code < 0 && code > -4096) return names[ESB_FAIL_IO]; /* a negative errno */
    return names[ESB_FAIL_ERROR];
}

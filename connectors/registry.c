/* registry.c - the table of every connector. Adding a connector is one line
 * here plus its own file pair; nothing else changes. */
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

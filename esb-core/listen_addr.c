/* listen_addr.c - a listen address as a socket address (see listen_addr.h). */
#include "config.h"

#include "listen_addr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "conf_attr.h"

int esb_listen_addr_parse(const char *listen, struct esb_listen_addr *out)
{
    char *host = NULL;
    unsigned port = 0;
    int rc = ESB_EINVAL;
    memset(out, 0, sizeof(*out));
    if (esb_parse_listen(listen, &host, &port) != 0) goto out;
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, h, &out->u.v4.sin_addr) == 1) {
        out->u.v4.sin_family = AF_INET;
        out->u.v4.sin_port = htons((uint16_t)port);
        out->len = sizeof(out->u.v4);
    } else if (inet_pton(AF_INET6, h, &out->u.v6.sin6_addr) == 1) {
        out->u.v6.sin6_family = AF_INET6;
        out->u.v6.sin6_port = htons((uint16_t)port);
        out->len = sizeof(out->u.v6);
        out->ipv6 = 1;
    } else {
        goto out; /* esb_parse_listen lets only these through; be sure */
    }
    out->port = port;
    rc = 0;
out:
    if (rc) memset(out, 0, sizeof(*out));
    free(host);
    return rc;
}

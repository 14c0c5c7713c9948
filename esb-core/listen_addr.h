/* listen_addr.h - a configured listen address ("host:port", "[v6]:port",
 * "localhost:port": esb_parse_listen's syntax) as the socket address a
 * server binds. Used by http-in and the admin API, which hand it to
 * libmicrohttpd (MHD_OPTION_SOCK_ADDR, MHD_USE_IPv6). No state; any thread. */
#ifndef ESB_LISTEN_ADDR_H
#define ESB_LISTEN_ADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "util.h"

struct esb_listen_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } u;
    socklen_t len; /* of u.v4 or u.v6, for bind(2) */
    int ipv6;      /* 1: u.v6 holds an IPv6 address; 0: u.v4 an IPv4 one */
    unsigned port; /* 1..65535 */
};

/* Parse listen into out: an IPv4 address, "localhost" (127.0.0.1) or an
 * IPv6 address in [brackets], then ":port". Returns 0, or ESB_EINVAL when
 * listen is not such an address (a host name, no or a bad port), out then
 * zeroed. */
int esb_listen_addr_parse(const char *listen, struct esb_listen_addr *out) ESB_WUR;

#endif

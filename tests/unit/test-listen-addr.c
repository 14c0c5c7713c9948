/* test-listen-addr.c - esb_listen_addr_parse: IPv4, [IPv6], localhost as
 * 127.0.0.1, and the addresses it refuses (host names, no or bad port). */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "../tap.h"
#include "listen_addr.h"

/* listen parses to family/address text/port. */
static void parses(const char *listen, int ipv6, const char *addr, unsigned port)
{
    struct esb_listen_addr la;
    char text[INET6_ADDRSTRLEN] = "";
    int rc = esb_listen_addr_parse(listen, &la);
    if (rc == 0) {
        if (la.ipv6)
            inet_ntop(AF_INET6, &la.u.v6.sin6_addr, text, sizeof(text));
        else
            inet_ntop(AF_INET, &la.u.v4.sin_addr, text, sizeof(text));
    }
    int fam_ok = ipv6 ? la.u.sa.sa_family == AF_INET6 && la.len == sizeof(la.u.v6) &&
                            ntohs(la.u.v6.sin6_port) == port
                      : la.u.sa.sa_family == AF_INET && la.len == sizeof(la.u.v4) &&
                            ntohs(la.u.v4.sin_port) == port;
    if (!ok(rc == 0 && la.ipv6 == ipv6 && fam_ok && la.port == port && strcmp(text, addr) == 0,
            "'%s' = %s %s port %u", listen, ipv6 ? "IPv6" : "IPv4", addr, port))
        diag("rc %d ipv6 %d family %d len %u port %u addr %s", rc, la.ipv6, la.u.sa.sa_family,
             (unsigned)la.len, la.port, text);
}

static void refused(const char *listen)
{
    struct esb_listen_addr la;
    memset(&la, 0xa5, sizeof(la));
    int rc = esb_listen_addr_parse(listen, &la);
    ok(rc == ESB_EINVAL && la.len == 0 && la.port == 0 && la.ipv6 == 0, "'%s' refused", listen);
}

int main(void)
{
    parses("127.0.0.1:8080", 0, "127.0.0.1", 8080);
    parses("0.0.0.0:1", 0, "0.0.0.0", 1);
    parses("10.1.2.3:65535", 0, "10.1.2.3", 65535);
    parses("localhost:9090", 0, "127.0.0.1", 9090);
    parses("[::1]:8081", 1, "::1", 8081);
    parses("[::]:80", 1, "::", 80);
    parses("[fe80::1:2]:443", 1, "fe80::1:2", 443);
    refused("example.com:80");
    refused("[localhost]:80");
    refused("::1:80");
    refused("[::1]");
    refused("127.0.0.1");
    refused("127.0.0.1:0");
    refused("127.0.0.1:65536");
    refused("");
    refused(NULL);
    return tap_done();
}

/* http_ipcount.h - connections per client address for http-in's server
 * (per-ip-connections): a count per address under one lock, taken at
 * accept and released at close. An IPv4-mapped IPv6 address counts as the
 * IPv4 address. */
#ifndef ESB_HTTP_IPCOUNT_H
#define ESB_HTTP_IPCOUNT_H

#include <sys/socket.h>

struct esb_ipkey {
    unsigned char len; /* 4 or 16; 0: not an IP address (never limited) */
    unsigned char b[16];
};

struct esb_ipcount;

void esb_ipkey_from(struct esb_ipkey *k, const struct sockaddr *sa);

struct esb_ipcount *esb_ipcount_new(void);
void esb_ipcount_free(struct esb_ipcount *t);
/* Count one more connection from k: 0, or -1 when k has max already. */
int esb_ipcount_take(struct esb_ipcount *t, const struct esb_ipkey *k, unsigned max);
/* A connection from k ended. */
void esb_ipcount_release(struct esb_ipcount *t, const struct esb_ipkey *k);

#endif

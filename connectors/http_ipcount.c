/* http_ipcount.c - connections per client address. See http_ipcount.h. */
#include "config.h"

#include "http_ipcount.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define IP_BUCKETS 256

struct ip_entry {
    struct esb_ipkey key;
    unsigned count;
    struct ip_entry *next;
};

struct esb_ipcount {
    pthread_mutex_t lock;
    struct ip_entry *b[IP_BUCKETS];
};

void esb_ipkey_from(struct esb_ipkey *k, const struct sockaddr *sa)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        k->len = 4;
        memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, 12) == 0) {
            k->len = 4;
            memcpy(k->b, a + 12, 4);
        } else {
            k->len = 16;
            memcpy(k->b, a, 16);
        }
    }
}

static unsigned hash(const struct esb_ipkey *k)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (unsigned i = 0; i < k->len; i++) h = (h ^ k->b[i]) * 16777619u;
    return h % IP_BUCKETS;
}

static int same(const struct esb_ipkey *a, const struct esb_ipkey *b)
{
    return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

struct esb_ipcount *esb_ipcount_new(void)
{
    struct esb_ipcount *t = esb_calloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void esb_ipcount_free(struct esb_ipcount *t)
{
    if (!t) return;
    for (unsigned i = 0; i < IP_BUCKETS; i++)
        for (struct ip_entry *e = t->b[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int esb_ipcount_take(struct esb_ipcount *t, const struct esb_ipkey *k, unsigned max)
{
    if (!k->len) return 0;
    unsigned h = hash(k);
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    struct ip_entry *e = t->b[h];
    while (e && !same(&e->key, k)) e = e->next;
    if (!e) {
        e = esb_calloc(1, sizeof(*e));
        e->key = *k;
        e->next = t->b[h];
        t->b[h] = e;
    }
    if (e->count >= max)
        rc = -1;
    else
        e->count++;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void esb_ipcount_release(struct esb_ipcount *t, const struct esb_ipkey *k)
{
    if (!k->len) return;
    unsigned h = hash(k);
    pthread_mutex_lock(&t->lock);
    struct ip_entry **pp = &t->b[h];
    while (*pp && !same(&(*pp)->key, k)) pp = &(*pp)->next;
    struct ip_entry *e = *pp;
    if (e && --e->count == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&t->lock);
}

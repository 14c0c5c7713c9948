/* runtime.h - the running gateway: a config generation, the bus, the worker
 * pool that runs routes and deliveries, and the inbound endpoints.
 *
 * Bus queues: route:ID (input of a route fed by a connector), queue:NAME,
 * topic:NAME#ROUTE (a route's subscription), deliver:ENDPOINT (messages on
 * their way to an outbound connector), dlq.ROUTE (dead letters).
 *
 * Workers consume every input queue of the current generation. For a route
 * entry they run the route and commit ONE transaction: the outputs (appended
 * to their queues/topics/delivery queues) plus the ack of the input; a
 * routing error dead-letters the input instead. For a delivery entry they
 * call the outbound connector: DONE acks, RETRY schedules a retry with
 * backoff, REJECT (or attempts exhausted) dead-letters with the reason.
 *
 * Reload swaps the generation atomically: each worker finishes its current
 * entry under the old generation and takes the next under the new one;
 * entries already on the bus keep their queue names, so nothing is lost.
 *
 * Thread-safety: all functions may be called from any thread. */
#ifndef ESB_RUNTIME_H
#define ESB_RUNTIME_H

#include <stdint.h>

#include "util.h"

struct esb_bus;
struct esb_config;
struct esb_endpoint;
struct esb_msg;
struct esb_runtime;

/* Open the bus and start workers and inbound endpoints for cfg (a ref is
 * taken). on_fatal (may be NULL) is called once if the bus fails fatally
 * (an fdatasync error); esbd exits from it. On error nothing is left
 * running. */
int esb_runtime_start(struct esb_config *cfg, void (*on_fatal)(void *ctx, const char *why),
                      void *fatal_ctx, struct esb_runtime **out, struct esb_err *err) ESB_WUR;
/* Switch to cfg (a ref is taken). On error the old config keeps running. */
int esb_runtime_reload(struct esb_runtime *rt, struct esb_config *cfg, struct esb_err *err) ESB_WUR;
/* Stop inbound endpoints, let workers finish their current entries, close
 * the bus. Everything not finished stays durably queued. NULL-safe. */
void esb_runtime_stop(struct esb_runtime *rt);

/* For inbound connectors: make m durable on the input queue of the route
 * that consumes endpoint ep (for http-in: at path). Returns 0 once durable;
 * ESB_ENOTFOUND if no route takes it; ESB_EFULL under back-pressure
 * (answer 503/stop picking up); ESB_EFAILED/ESB_ECLOSED when stopping. */
int esb_runtime_accept(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path,
                       const struct esb_msg *m, struct esb_err *err) ESB_WUR;
/* The same, and in the same durable batch mark key (esb_txn_mark) until
 * expires_ms, so that a source can later ask whether it was accepted
 * (file-in marks its claims: a crash between accept and moving the file to
 * done-dir never accepts it twice). */
int esb_runtime_accept_marked(struct esb_runtime *rt, const struct esb_endpoint *ep,
                              const char *path, const struct esb_msg *m, const char *key,
                              uint64_t expires_ms, struct esb_err *err) ESB_WUR;
/* Accepts without blocking the caller's thread, several in one transaction
 * (one commit, one callback): what an inbound connector gathered in one
 * pass of its event loop. The batch holds the current generation's routes
 * until it is committed. */
struct esb_accept_batch;
struct esb_accept_batch *esb_runtime_batch_new(struct esb_runtime *rt);
/* Add m (borrowed) for ep at path. 0, or ESB_ENOTFOUND / ESB_ECLOSED with
 * err: m was not added. */
int esb_runtime_batch_add(struct esb_accept_batch *b, const struct esb_endpoint *ep,
                          const char *path, const struct esb_msg *m, struct esb_err *err) ESB_WUR;
/* Commit b (which this frees). An error that refuses the whole batch
 * (ESB_EFULL, ESB_ECLOSED, ...) is returned at once and done is never
 * called; otherwise it returns 0 and done(ctx, rc) is called exactly once,
 * when the batch is durable (rc 0) or could not be written (rc < 0: not
 * acknowledged) - on the bus writer if quick (esb_txn_set_quick: a few
 * microseconds of work at most), else on the completer; done must not block
 * on the bus. An empty batch is freed and returns ESB_EINVAL. */
int esb_runtime_batch_commit(struct esb_accept_batch *b, void (*done)(void *ctx, int rc), void *ctx,
                             int quick, struct esb_err *err) ESB_WUR;
/* 1 if key was marked by an accepted message and has not expired. */
int esb_runtime_marked(struct esb_runtime *rt, const char *key);
/* True if some route of the current generation takes ep at path. */
int esb_runtime_has_route(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path);

struct esb_bus *esb_runtime_bus(struct esb_runtime *rt);

/* ---- request-reply (runtime_reply.c) ---- */

/* The answer to a request: called exactly once per request that
 * esb_runtime_request accepted, from a worker thread, the reply-timeout
 * thread or esb_runtime_stop - possibly before esb_runtime_request has
 * returned. final (borrowed for the call) is set only with a route's
 * result; status and error:
 *   final != NULL  the route finished: status from its header
 *                  esb-reply-status (200..599, else 200); error NULL
 *   204            a filter or transform dropped the message
 *   502            routing error (dead-lettered): error is the reason
 *   504            no reply within timeout_ms: error says so
 *   503            esbd stopped before the route finished: error says so
 * Whatever the answer, the message is durable and is (or was) processed:
 * a 504 or 503 cancels nothing. Only the route fed by the connector
 * answers (not a route consuming its queue:/topic: outputs). */
typedef void (*esb_reply_fn)(void *ctx, const struct esb_msg *final, int status, const char *error);

/* Like esb_runtime_accept, and then wait for the route that consumes m to
 * finish with it: reply(ctx, ...) is called once that route's hand-off is
 * committed, or after timeout_ms (counted from when m is durable). Returns
 * 0 once m is durable; on error (those of esb_runtime_accept, ESB_EEXIST
 * if m's id already waits) nothing was stored and reply is never called. */
int esb_runtime_request(struct esb_runtime *rt, const struct esb_endpoint *ep, const char *path,
                        const struct esb_msg *m, uint64_t timeout_ms, esb_reply_fn reply, void *ctx,
                        struct esb_err *err) ESB_WUR;

/* ---- dead letters (for the admin API) ---- */

/* Replay dead letters of dlq: each is taken, re-appended to the queue it
 * died in (its dead_from: e.g. deliver:crm resumes the delivery) or to `to`
 * (a bus queue name) when given, with header esb-replays incremented, and
 * removed from the DLQ in the same transaction — so an entry replayed twice
 * concurrently is replayed once (the second finds it taken or gone).
 * seq != 0: that entry only; seq == 0: every entry whose reason contains
 * filter (NULL: all). Returns how many were replayed, or a negative error
 * (ESB_ENOTFOUND: no such entry/queue; ESB_EBUSY: held right now). */
int esb_runtime_replay(struct esb_runtime *rt, const char *dlq, uint64_t seq, const char *filter,
                       const char *to, struct esb_err *err);
/* Delete dead letters (same selection); returns how many, or negative. */
int esb_runtime_purge(struct esb_runtime *rt, const char *dlq, uint64_t seq, const char *filter,
                      struct esb_err *err);

#endif

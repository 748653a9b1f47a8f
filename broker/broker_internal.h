/*
 * broker_internal.h - what the broker's own files share. Not for other modules.
 */
#ifndef SLUICE_BROKER_INTERNAL_H
#define SLUICE_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "invoker/invoker.h"

struct event_base;

typedef struct br_api br_api;

/*
 * Starts the HTTP API (Lambda's REST paths, /metrics) on listen ("host:port"; port 0 picks
 * one). inv is borrowed for the API's lifetime. On success returns 0, *out, and the address
 * actually bound in bound ("127.0.0.1:34567"). Returns SL_EINVAL for a bad address, SL_EIO
 * when the address cannot be bound.
 */
int br_api_start(struct event_base *base, const char *listen, inv_invoker *inv, br_api **out,
                 char *bound, size_t boundsz);
/* Adds the event source mappings' samples to /metrics (borrowed). */
struct pl_pollers;
void br_api_set_pollers(br_api *api, struct pl_pollers *pl);
/* New requests get 503 ServiceException from now on; requests in flight finish. */
void br_api_set_draining(br_api *api);
/*
 * Runs cb (once, from the loop) when every accepted request has been answered and its reply
 * sent, or when deadline_s passes first (a client that vanished mid-reply). Used by draining.
 */
void br_api_when_idle(br_api *api, double deadline_s, void (*cb)(void *arg), void *arg);
/* Closes the listener and every connection. NULL is a no-op. */
void br_api_free(br_api *api);

/*
 * Writes the Lambda error shape: status, x-amzn-ErrorType: type, JSON body {"Type": "User" or
 * "Service", "message": message} plus "Reason" when reason is not NULL.
 */
struct evhttp_request;
void br_api_send_error(struct evhttp_request *req, int status, const char *type,
                       const char *message, const char *reason);

/*
 * The configuration decoder behind br_config_load (broker_config.c), for tests and the fuzzer
 * (broker_config_fuzz.c): parses the YAML text data[0..len) (no NUL needed) into *out (free
 * with br_config_free). name_for_errors prefixes every message ("NAME:LINE: Key: reason") and
 * becomes (*out)->path; base_dir (absolute, symlink-free) becomes (*out)->dir, which relative
 * paths resolve against. Reads no file; the only I/O is realpath()/stat() of CodeUri, which
 * must be an existing folder (a missing one is an ordinary SL_ECONFIG). Returns 0; SL_ECONFIG
 * with a malloc'd message in *errmsg (caller frees); SL_EINVAL for NULL arguments or a
 * relative base_dir; SL_ENOMEM. On failure *out is NULL and nothing is left allocated.
 */
int br_config_parse_buffer(const uint8_t *data, size_t len, const char *name_for_errors,
                           const char *base_dir, struct br_config **out, char **errmsg);

/*
 * `sluice dlq list|replay ...` (broker_dlq.c): lists or replays the dead-letter stream of a Redis
 * stream mapping. argv[0] is "dlq". A command-line tool: synchronous, never on the broker's
 * loop. Prints results to stdout and problems to stderr, and returns the process's exit
 * status: 0 all done (or nothing to do), 1 some dead letters failed or were skipped, or Redis or
 * the broker could not be reached, 2 a bad command line or URI.
 */
int br_dlq_main(int argc, char **argv);

#endif

/*
 * poller_registry.c - the source kinds, one line each. Adding a source touches its own file
 * and this table.
 */
#include <string.h>

#include "pollers/pollers_internal.h"

extern const struct pl_source pl_redis_source;

static const struct pl_source *const sources[] = {
    &pl_redis_source,
};

const struct pl_source *pl_source_find(const char *uri)
{
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        size_t n = strlen(sources[i]->scheme);
        if (strncmp(uri, sources[i]->scheme, n) == 0 && strncmp(uri + n, "://", 3) == 0)
            return sources[i];
    }
    return NULL;
}

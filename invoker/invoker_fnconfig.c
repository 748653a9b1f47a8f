/*
 * invoker_fnconfig.c - defaults, deep copy and release of struct inv_function_config.
 *
 * The config parser fills these structs and the invoker keeps its own copy of each, so a copy
 * must own every string it points to. A cleared struct is all zeroes, which is also what
 * clear() accepts: clearing twice, or clearing a half-filled struct, is safe.
 */
#include <stdlib.h>
#include <string.h>

#include "invoker/invoker.h"

/* The documented defaults, in one place (schemas/config.schema.json repeats them). */
#define FNCFG_TIMEOUT_S 3
#define FNCFG_MEMORY_MB 128
#define FNCFG_IDLE_TIMEOUT_S 300.0
#define FNCFG_MAX_RETRY_ATTEMPTS 2
#define FNCFG_MAX_EVENT_AGE_S 21600
#define FNCFG_RETRY_BASE_DELAY_S 60.0

/*
 * Sets the documented defaults on a zeroed config: Timeout 3, MemorySize 128, unreserved
 * concurrency (-1), InstanceIdleTimeoutSeconds 300, ProvisionedConcurrency 0, and the async
 * defaults (2 retries, 21600 s maximum age, 60 s base delay, no destinations). Does not touch
 * name, command, handler, code_dir or env.
 */
void inv_function_config_defaults(struct inv_function_config *fc)
{
    fc->timeout_s = FNCFG_TIMEOUT_S;
    fc->memory_mb = FNCFG_MEMORY_MB;
    fc->reserved_concurrency = -1;
    fc->idle_timeout_s = FNCFG_IDLE_TIMEOUT_S;
    fc->provisioned = 0;
    fc->eic.max_retry_attempts = FNCFG_MAX_RETRY_ATTEMPTS;
    fc->eic.max_event_age_s = FNCFG_MAX_EVENT_AGE_S;
    fc->eic.retry_base_delay_s = FNCFG_RETRY_BASE_DELAY_S;
}

/* strdup that keeps NULL as NULL; *ok turns false when a real string could not be copied. */
static char *fncfg_dup(const char *s, bool *ok)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

/*
 * Deep copy of src into dst. dst's previous contents are overwritten, not freed (clear it first
 * if it owned anything). Returns 0, or SL_ENOMEM with dst left cleared (all zeroes).
 */
int inv_function_config_copy(struct inv_function_config *dst,
                             const struct inv_function_config *src)
{
    bool ok = true;
    size_t i;

    *dst = *src;
    dst->name = NULL;
    dst->command = NULL;
    dst->command_len = 0;
    dst->handler = NULL;
    dst->code_dir = NULL;
    dst->env = NULL;
    dst->env_len = 0;
    dst->eic.on_success = NULL;
    dst->eic.on_failure = NULL;

    dst->name = fncfg_dup(src->name, &ok);
    dst->handler = fncfg_dup(src->handler, &ok);
    dst->code_dir = fncfg_dup(src->code_dir, &ok);
    dst->eic.on_success = fncfg_dup(src->eic.on_success, &ok);
    dst->eic.on_failure = fncfg_dup(src->eic.on_failure, &ok);
    if (!ok)
        goto fail;

    if (src->command) {
        /* command_len entries plus the NULL terminator the spawner relies on. */
        dst->command = calloc(src->command_len + 1, sizeof(*dst->command));
        if (!dst->command)
            goto fail;
        dst->command_len = src->command_len;
        for (i = 0; i < src->command_len; i++)
            dst->command[i] = fncfg_dup(src->command[i], &ok);
        if (!ok)
            goto fail;
    }

    if (src->env_len > 0) {
        dst->env = calloc(src->env_len, sizeof(*dst->env));
        if (!dst->env)
            goto fail;
        dst->env_len = src->env_len;
        for (i = 0; i < src->env_len; i++) {
            dst->env[i].name = fncfg_dup(src->env[i].name, &ok);
            dst->env[i].value = fncfg_dup(src->env[i].value, &ok);
        }
        if (!ok)
            goto fail;
    }
    return 0;

fail:
    inv_function_config_clear(dst);
    return SL_ENOMEM;
}

/*
 * Frees every string and array fc owns (not fc itself) and leaves it all zeroes, so clearing
 * twice is harmless. NULL is a no-op.
 */
void inv_function_config_clear(struct inv_function_config *fc)
{
    size_t i;

    if (!fc)
        return;
    free(fc->name);
    if (fc->command) {
        for (i = 0; i < fc->command_len; i++)
            free(fc->command[i]);
        free(fc->command);
    }
    free(fc->handler);
    free(fc->code_dir);
    if (fc->env) {
        for (i = 0; i < fc->env_len; i++) {
            free(fc->env[i].name);
            free(fc->env[i].value);
        }
        free(fc->env);
    }
    free(fc->eic.on_success);
    free(fc->eic.on_failure);
    memset(fc, 0, sizeof(*fc));
}

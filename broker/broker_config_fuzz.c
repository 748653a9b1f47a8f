/*
 * broker_config_fuzz.c - libFuzzer target for the configuration decoder,
 * br_config_parse_buffer (broker_config.c). Built by broker/fuzz.cmake only (clang, and
 * -DSLUICE_SANITIZE=ON or -DSLUICE_FUZZ=ON), which defines SLUICE_FUZZ_TARGET. Elsewhere (the
 * broker's source glob picks this file up too) it compiles to nothing.
 *
 * The input is the whole YAML file. Relative paths resolve against a folder that does not
 * exist, so a relative CodeUri is an ordinary error (an absolute one is stat'ed: harmless).
 * Checks, beyond ASan/UBSan and LeakSanitizer: the result is 0, SL_ECONFIG with a message that
 * starts with the file name, or SL_ENOMEM; exactly one of config and message is set on 0 and
 * SL_ECONFIG.
 * Seeds: tests/fuzz/config/. Run: ./fuzz_config -max_len=8192 <a copy of the seed folder>
 */
#ifdef SLUICE_FUZZ_TARGET

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_internal.h"

#define FZ_NAME "fuzz.yaml"
#define FZ_DIR "/nonexistent-sluice-fuzz/config"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct br_config *cfg = NULL;
    char *errmsg = NULL;
    int rc = br_config_parse_buffer(data, size, FZ_NAME, FZ_DIR, &cfg, &errmsg);

    if (rc == 0) {
        if (!cfg || errmsg)
            abort();
    } else if (rc == SL_ECONFIG) {
        if (cfg || !errmsg || strncmp(errmsg, FZ_NAME ":", strlen(FZ_NAME ":")) != 0)
            abort();
    } else if (rc != SL_ENOMEM || cfg || errmsg) {
        abort();
    }
    br_config_free(cfg);
    free(errmsg);
    return 0;
}

#else

/* ISO C wants a declaration in every translation unit. */
typedef int br_config_fuzz_not_built;

#endif

/*
 * test_config.c - br_config_load against real files: the issue's example, defaults, path
 * resolution, and every class of error with its line number. Run it under valgrind or with
 * SLUICE_SANITIZE=ON: every error path must free everything.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/broker.h"
#include "invoker/invoker.h"
#include "pollers/pollers.h"
#include "testlib.h"

struct tctx {
    char root[1024]; /* realpath of the temporary folder */
    char conf[1040]; /* <root>/conf: the config files' folder */
};

static void mkdir_ok(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        T_FAIL("mkdir %s: %s", path, strerror(errno));
}

static void setup(struct tctx *t)
{
    const char *base = getenv("SLUICE_TEST_TMP");
    char tmpl[1024], p[PATH_MAX], *real;

    if (!base || !*base)
        base = "/tmp";
    mkdir_ok(base);
    snprintf(tmpl, sizeof(tmpl), "%s/test_config.XXXXXX", base);
    if (!mkdtemp(tmpl))
        T_FAIL("mkdtemp %s: %s", tmpl, strerror(errno));
    real = realpath(tmpl, NULL);
    if (!real || strlen(real) >= sizeof(t->root))
        T_FAIL("realpath %s: %s", tmpl, real ? "too long" : strerror(errno));
    memcpy(t->root, real, strlen(real) + 1);
    free(real);
    snprintf(t->conf, sizeof(t->conf), "%s/conf", t->root);
    mkdir_ok(t->conf);
    snprintf(p, sizeof(p), "%s/examples", t->conf);
    mkdir_ok(p);
    snprintf(p, sizeof(p), "%s/examples/echo", t->conf);
    mkdir_ok(p);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(const struct tctx *t)
{
    nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to <conf>/name and puts that file's path in path[pathsz]. */
static void write_conf(const struct tctx *t, const char *name, const char *text, char *path,
                       size_t pathsz)
{
    FILE *f;

    snprintf(path, pathsz, "%s/%s", t->conf, name);
    f = fopen(path, "w");
    if (!f)
        T_FAIL("fopen %s: %s", path, strerror(errno));
    if (fputs(text, f) < 0 || fclose(f) != 0)
        T_FAIL("write %s failed", path);
}

static struct br_config *load_ok(const struct tctx *t, const char *text)
{
    char path[PATH_MAX], *err = NULL;
    struct br_config *cfg = NULL;
    int rc;

    write_conf(t, "ok.yaml", text, path, sizeof(path));
    rc = br_config_load(path, &cfg, &err);
    if (rc != 0)
        T_FAIL("load failed: %s (%s)\n%s", sl_err_name(rc), err ? err : "no message", text);
    T_ASSERT(cfg != NULL);
    T_ASSERT(err == NULL);
    return cfg;
}

/* Loads text expecting SL_ECONFIG with "PATH:LINE: " followed by a message containing needle. */
static void load_bad_at(const struct tctx *t, const char *text, int line, const char *needle,
                        const char *where)
{
    char path[PATH_MAX], prefix[PATH_MAX + 32], *err = NULL;
    struct br_config *cfg = (struct br_config *)&cfg; /* must be reset to NULL */
    int rc;

    write_conf(t, "bad.yaml", text, path, sizeof(path));
    rc = br_config_load(path, &cfg, &err);
    if (rc != SL_ECONFIG)
        T_FAIL("%s: expected SL_ECONFIG, got %s for:\n%s", where, sl_err_name(rc), text);
    T_ASSERT(cfg == NULL);
    T_ASSERT(err != NULL);
    if (line > 0)
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", path);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        T_FAIL("%s: message \"%s\" does not start with \"%s\"", where, err, prefix);
    if (!strstr(err, needle))
        T_FAIL("%s: message \"%s\" lacks \"%s\"", where, err, needle);
    free(err);
}

#define LOAD_BAD(text, line, needle) load_bad_at(t, text, line, needle, #needle)

static void expect_str(const char *got, const char *fmt, const char *arg)
{
    char want[PATH_MAX * 2];

    snprintf(want, sizeof(want), fmt, arg);
    T_EQ_STR(got, want);
}

/* ---------------------------------------------------------------------------------------- */

static const char issue_example[] =
    "Listen: 127.0.0.1:9070\n"
    "StateDir: ./.sluice\n"
    "AccountConcurrency: 1000\n"
    "Functions:\n"
    "  - FunctionName: echo\n"
    "    CodeUri: ./examples/echo\n"
    "    Command: [\"./build/examples/echo-runtime\"]\n"
    "    Handler: echo.handler\n"
    "    Timeout: 3\n"
    "    MemorySize: 128\n"
    "    Environment:\n"
    "      Variables: {GREETING: hello}\n"
    "    ReservedConcurrentExecutions: 4\n"
    "    EventInvokeConfig:\n"
    "      MaximumRetryAttempts: 2\n"
    "      MaximumEventAgeInSeconds: 3600\n"
    "      DestinationConfig:\n"
    "        OnFailure: {Destination: \"file:///tmp/echo-failures.jsonl\"}\n"
    "        OnSuccess: {Destination: \"file:///tmp/echo-successes.jsonl\"}\n";

static void test_issue_example(const struct tctx *t)
{
    struct br_config *cfg = load_ok(t, issue_example);
    const struct inv_function_config *fc;

    expect_str(cfg->path, "%s/ok.yaml", t->conf);
    T_EQ_STR(cfg->dir, t->conf);
    T_EQ_STR(cfg->listen, "127.0.0.1:9070");
    expect_str(cfg->state_dir, "%s/.sluice", t->conf);
    T_EQ_INT(cfg->account_concurrency, 1000);
    T_EQ_INT(cfg->allow_remote, 0);
    T_EQ_STR(cfg->log_level, "INFO");
    T_EQ_INT(cfg->nfunctions, 1);

    fc = &cfg->functions[0];
    T_EQ_STR(fc->name, "echo");
    T_EQ_INT(fc->command_len, 1);
    expect_str(fc->command[0], "%s/build/examples/echo-runtime", t->conf);
    T_ASSERT(fc->command[1] == NULL);
    T_EQ_STR(fc->handler, "echo.handler");
    expect_str(fc->code_dir, "%s/examples/echo", t->conf);
    T_EQ_INT(fc->timeout_s, 3);
    T_EQ_INT(fc->memory_mb, 128);
    T_EQ_INT(fc->env_len, 1);
    T_EQ_STR(fc->env[0].name, "GREETING");
    T_EQ_STR(fc->env[0].value, "hello");
    T_EQ_INT(fc->reserved_concurrency, 4);
    T_EQ_INT(fc->provisioned, 0);
    T_ASSERT(fc->idle_timeout_s == 300.0);
    T_EQ_INT(fc->eic.max_retry_attempts, 2);
    T_EQ_INT(fc->eic.max_event_age_s, 3600);
    T_ASSERT(fc->eic.retry_base_delay_s == 60.0);
    T_EQ_STR(fc->eic.on_failure, "file:///tmp/echo-failures.jsonl");
    T_EQ_STR(fc->eic.on_success, "file:///tmp/echo-successes.jsonl");

    /* the invoker keeps deep copies */
    {
        struct inv_function_config copy;
        T_EQ_INT(inv_function_config_copy(&copy, fc), 0);
        T_ASSERT(copy.name != fc->name);
        T_EQ_STR(copy.name, fc->name);
        T_EQ_INT(copy.command_len, 1);
        T_EQ_STR(copy.command[0], fc->command[0]);
        T_ASSERT(copy.command[1] == NULL);
        T_EQ_STR(copy.env[0].value, "hello");
        T_EQ_STR(copy.eic.on_success, fc->eic.on_success);
        T_EQ_INT(copy.reserved_concurrency, 4);
        inv_function_config_clear(&copy);
        T_ASSERT(copy.name == NULL && copy.command == NULL && copy.env == NULL);
        inv_function_config_clear(&copy); /* twice is harmless */
        inv_function_config_clear(NULL);
    }
    br_config_free(cfg);
    br_config_free(NULL);
}

static void test_defaults(const struct tctx *t)
{
    struct br_config *cfg;
    const struct inv_function_config *fc;

    cfg = load_ok(t, "Functions:\n"
                  "  - FunctionName: f\n"
                  "    Command: [node, index.mjs]\n");
    T_EQ_STR(cfg->listen, "127.0.0.1:9070");
    expect_str(cfg->state_dir, "%s/.sluice", t->conf);
    T_EQ_INT(cfg->account_concurrency, 1000);
    T_EQ_INT(cfg->allow_remote, 0);
    T_EQ_STR(cfg->log_level, "INFO");
    T_EQ_INT(cfg->nfunctions, 1);
    fc = &cfg->functions[0];
    T_EQ_STR(fc->command[0], "node"); /* bare: PATH lookup at spawn */
    T_EQ_STR(fc->command[1], "index.mjs");
    T_EQ_STR(fc->handler, "index.handler");
    T_EQ_STR(fc->code_dir, t->conf);
    T_EQ_INT(fc->timeout_s, 3);
    T_EQ_INT(fc->memory_mb, 128);
    T_EQ_INT(fc->reserved_concurrency, -1);
    T_EQ_INT(fc->provisioned, 0);
    T_ASSERT(fc->idle_timeout_s == 300.0);
    T_EQ_INT(fc->env_len, 0);
    T_EQ_INT(fc->eic.max_retry_attempts, 2);
    T_EQ_INT(fc->eic.max_event_age_s, 21600);
    T_ASSERT(fc->eic.retry_base_delay_s == 60.0);
    T_ASSERT(fc->eic.on_success == NULL && fc->eic.on_failure == NULL);
    br_config_free(cfg);

    /* no functions at all is a valid (idle) broker */
    cfg = load_ok(t, "Listen: 127.0.0.1:0\n");
    T_EQ_INT(cfg->nfunctions, 0);
    T_EQ_STR(cfg->listen, "127.0.0.1:0");
    br_config_free(cfg);
    cfg = load_ok(t, "Functions: []\nLogLevel: DEBUG\n");
    T_EQ_INT(cfg->nfunctions, 0);
    T_EQ_STR(cfg->log_level, "DEBUG");
    br_config_free(cfg);
}

static void test_everything_set(const struct tctx *t)
{
    struct br_config *cfg;
    const struct inv_function_config *fc;
    char parent[PATH_MAX];

    snprintf(parent, sizeof(parent), "%s", t->conf);
    *strrchr(parent, '/') = '\0';

    cfg = load_ok(t, "# every key, in an unusual order\n"
                  "Functions:\n"
                  "  - EventInvokeConfig:\n"
                  "      RetryBaseDelaySeconds: 0.2\n"
                  "      MaximumRetryAttempts: 0\n"
                  "      MaximumEventAgeInSeconds: 60\n"
                  "      DestinationConfig:\n"
                  "        OnSuccess: {Destination: function:second}\n"
                  "        OnFailure: {Destination: 'file://./dlq/failures.jsonl'}\n"
                  "    Command: ['../bin/run', --flag, ./app.js, lib/x.py, ../y]\n"
                  "    FunctionName: first-fn_1\n"
                  "    ReservedConcurrentExecutions: 10\n"
                  "    ProvisionedConcurrency: 10\n"
                  "    InstanceIdleTimeoutSeconds: 1.5\n"
                  "    Description: the first one\n"
                  "    Runtime: provided.al2023\n"
                  "    Timeout: 900\n"
                  "    MemorySize: 10240\n"
                  "    Environment:\n"
                  "      Variables:\n"
                  "        PORT: 8080\n"
                  "        DEBUG: true\n"
                  "        EMPTY: ''\n"
                  "        Path_2: \"/a b\"\n"
                  "  - FunctionName: second\n"
                  "    Command: [bin/tool]\n"
                  "    CodeUri: .\n"
                  "    EventInvokeConfig:\n"
                  "      DestinationConfig:\n"
                  "        OnFailure: {Destination: 'redis://127.0.0.1:6379/dead'}\n"
                  "        OnSuccess: {Destination: 'redis://cache.local:6380/3/done'}\n"
                  "  - FunctionName: third\n"
                  "    Command: [/usr/bin/python3, -m, app]\n"
                  "    ReservedConcurrentExecutions: 0\n"
                  "    EventInvokeConfig:\n"
                  "      DestinationConfig:\n"
                  "        OnSuccess: {}\n"
                  "        OnFailure: {Destination: 'file://../up.jsonl'}\n"
                  "StateDir: ../state/\n"
                  "AccountConcurrency: 200\n"
                  "AllowNonLoopbackListen: true\n"
                  "Listen: 0.0.0.0:8080\n"
                  "LogLevel: WARN\n");
    T_EQ_INT(cfg->account_concurrency, 200);
    T_EQ_INT(cfg->allow_remote, 1);
    T_EQ_STR(cfg->listen, "0.0.0.0:8080");
    T_EQ_STR(cfg->log_level, "WARN");
    expect_str(cfg->state_dir, "%s/state", parent);
    T_EQ_INT(cfg->nfunctions, 3);

    fc = &cfg->functions[0];
    T_EQ_STR(fc->name, "first-fn_1");
    T_EQ_INT(fc->command_len, 5);
    expect_str(fc->command[0], "%s/bin/run", parent);
    T_EQ_STR(fc->command[1], "--flag");
    expect_str(fc->command[2], "%s/app.js", t->conf);
    T_EQ_STR(fc->command[3], "lib/x.py"); /* only command[0] resolves without ./ */
    expect_str(fc->command[4], "%s/y", parent);
    T_EQ_INT(fc->reserved_concurrency, 10);
    T_EQ_INT(fc->provisioned, 10);
    T_ASSERT(fc->idle_timeout_s == 1.5);
    T_EQ_INT(fc->timeout_s, 900);
    T_EQ_INT(fc->memory_mb, 10240);
    T_EQ_INT(fc->env_len, 4);
    T_EQ_STR(fc->env[0].name, "PORT");
    T_EQ_STR(fc->env[0].value, "8080");
    T_EQ_STR(fc->env[1].value, "true");
    T_EQ_STR(fc->env[2].value, "");
    T_EQ_STR(fc->env[3].name, "Path_2");
    T_EQ_STR(fc->env[3].value, "/a b");
    T_ASSERT(fc->eic.retry_base_delay_s == 0.2);
    T_EQ_INT(fc->eic.max_retry_attempts, 0);
    T_EQ_INT(fc->eic.max_event_age_s, 60);
    T_EQ_STR(fc->eic.on_success, "function:second");
    expect_str(fc->eic.on_failure, "file://%s/dlq/failures.jsonl", t->conf);

    fc = &cfg->functions[1];
    expect_str(fc->command[0], "%s/bin/tool", t->conf);
    T_EQ_STR(fc->code_dir, t->conf);
    T_EQ_STR(fc->eic.on_failure, "redis://127.0.0.1:6379/dead");
    T_EQ_STR(fc->eic.on_success, "redis://cache.local:6380/3/done");

    fc = &cfg->functions[2];
    T_EQ_STR(fc->command[0], "/usr/bin/python3");
    T_EQ_INT(fc->reserved_concurrency, 0);
    T_ASSERT(fc->eic.on_success == NULL);
    expect_str(fc->eic.on_failure, "file://%s/up.jsonl", parent);
    br_config_free(cfg);

    /* loopback spellings need no flag */
    cfg = load_ok(t, "Listen: localhost:1\n");
    br_config_free(cfg);
    cfg = load_ok(t, "Listen: '[::1]:9070'\n");
    br_config_free(cfg);
    cfg = load_ok(t, "Listen: 127.1.2.3:65535\n");
    br_config_free(cfg);
}

#define FN "Functions:\n  - FunctionName: f\n    Command: [run]\n"

static void test_unknown_keys(const struct tctx *t)
{
    LOAD_BAD("Listen: 127.0.0.1:1\nListn: x\n", 2, "Listn: unknown key (known keys here: Listen");
    LOAD_BAD(FN "    Timeoutt: 3\n", 4, "Functions[0].Timeoutt: unknown key");
    LOAD_BAD(FN "    EventInvokeConfig:\n      MaxRetries: 1\n", 5,
             "Functions[0].EventInvokeConfig.MaxRetries: unknown key");
    LOAD_BAD(FN "    EventInvokeConfig:\n      DestinationConfig:\n"
                "        OnFailure: {Destination: 'file:///x', Type: y}\n",
             6, "Functions[0].EventInvokeConfig.DestinationConfig.OnFailure.Type: unknown key");
    LOAD_BAD(FN "    Environment: {Vars: {A1: b}}\n", 4,
             "Functions[0].Environment.Vars: unknown key");
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: f\n    Topic: t\n", 6,
             "EventSourceMappings[0].Topic: unknown key (known keys here: FunctionName, "
             "EventSourceArn, BatchSize, MaximumBatchingWindowInSeconds, Enabled, "
             "FunctionResponseTypes, ScalingConfig, UUID)");
    LOAD_BAD(FN "    Timeout: 3\n    Timeout: 4\n", 5, "duplicate key Timeout (first on line 4)");
}

static void test_wrong_types(const struct tctx *t)
{
    LOAD_BAD(FN "    Timeout: \"3\"\n", 4,
             "Functions[0].Timeout: expected an integer, got a string (\"3\")");
    LOAD_BAD(FN "    Timeout: 3.5\n", 4, "Functions[0].Timeout: expected an integer, got a number");
    LOAD_BAD(FN "    Timeout:\n", 4, "Functions[0].Timeout: expected an integer, got null");
    LOAD_BAD(FN "    Timeout:\n      a: 1\n", 4,
             "Functions[0].Timeout: expected an integer, got a map");
    LOAD_BAD("Functions:\n  FunctionName: f\n", 1, "Functions: expected a list, got a map");
    LOAD_BAD("Functions:\n  - [a]\n", 2, "Functions[0]: expected a map, got a list");
    LOAD_BAD("Functions:\n  - FunctionName: f\n    Command: run\n", 3,
             "Functions[0].Command: expected a list of strings, got a string");
    LOAD_BAD("Functions:\n  - FunctionName: f\n    Command: [run, 3]\n", 3,
             "Functions[0].Command[1]: expected a string, got an integer");
    LOAD_BAD("Functions:\n  - FunctionName: f\n    Command: []\n", 3,
             "Functions[0].Command: must name a program");
    LOAD_BAD("Functions:\n  - FunctionName: 12\n    Command: [run]\n", 2,
             "Functions[0].FunctionName: expected a string, got an integer");
    LOAD_BAD(FN "    Handler: true\n", 4, "Functions[0].Handler: expected a string, got a boolean");
    LOAD_BAD(FN "    Environment:\n      Variables: [A1]\n", 5,
             "Functions[0].Environment.Variables: expected a map of NAME: value, got a list");
    LOAD_BAD(FN "    Environment:\n      Variables: {AB: [1]}\n", 5,
             "Functions[0].Environment.Variables.AB: expected a string, got a list");
    LOAD_BAD(FN "    Environment:\n      Variables: {AB: ~}\n", 5,
             "Functions[0].Environment.Variables.AB: expected a string, got null");
    LOAD_BAD("AllowNonLoopbackListen: 1\n", 1,
             "AllowNonLoopbackListen: expected a boolean, got an integer");
    LOAD_BAD("AccountConcurrency: '10'\n", 1, "AccountConcurrency: expected an integer");
    LOAD_BAD("AccountConcurrency: 010\n", 1, "leading zeros are not allowed");
    LOAD_BAD(FN "    InstanceIdleTimeoutSeconds: soon\n", 4,
             "Functions[0].InstanceIdleTimeoutSeconds: expected a number, got a string");
    LOAD_BAD("- a\n- b\n", 1, "expected a map, got a list");
    LOAD_BAD("just a string\n", 1, "expected a map, got a string");
    LOAD_BAD("Listen: 127.0.0.1:1\n? [a, b]\n: c\n", 2, "keys must be strings");
}

static void test_ranges(const struct tctx *t)
{
    LOAD_BAD(FN "    Timeout: 901\n", 4, "Functions[0].Timeout: 901 is out of range 1..900");
    LOAD_BAD(FN "    Timeout: 0\n", 4, "Functions[0].Timeout: 0 is out of range 1..900");
    LOAD_BAD(FN "    Timeout: 99999999999999999999999\n", 4, "is out of range 1..900");
    LOAD_BAD(FN "    MemorySize: 127\n", 4,
             "Functions[0].MemorySize: 127 is out of range 128..10240");
    LOAD_BAD(FN "    MemorySize: 10241\n", 4, "10241 is out of range 128..10240");
    LOAD_BAD("AccountConcurrency: 0\n", 1, "AccountConcurrency: 0 is out of range 1..100000");
    LOAD_BAD("AccountConcurrency: 100001\n", 1, "100001 is out of range 1..100000");
    LOAD_BAD(FN "    ReservedConcurrentExecutions: -1\n", 4,
             "Functions[0].ReservedConcurrentExecutions: -1 is out of range 0..1000");
    LOAD_BAD("AccountConcurrency: 50\n" FN "    ReservedConcurrentExecutions: 51\n", 5,
             "51 is out of range 0..50");
    LOAD_BAD(FN "    ProvisionedConcurrency: -1\n", 4,
             "Functions[0].ProvisionedConcurrency: -1 is out of range 0..1000");
    LOAD_BAD(FN "    ProvisionedConcurrency: 5\n    ReservedConcurrentExecutions: 4\n", 4,
             "Functions[0].ProvisionedConcurrency: 5 is out of range 0..4 "
             "(ReservedConcurrentExecutions)");
    LOAD_BAD(FN "    InstanceIdleTimeoutSeconds: 0.5\n", 4,
             "Functions[0].InstanceIdleTimeoutSeconds: 0.5 is out of range 1..86400");
    LOAD_BAD(FN "    InstanceIdleTimeoutSeconds: 86401\n", 4, "86401 is out of range 1..86400");
    LOAD_BAD(FN "    InstanceIdleTimeoutSeconds: .inf\n", 4, ".inf is out of range 1..86400");
    LOAD_BAD(FN "    EventInvokeConfig:\n      MaximumRetryAttempts: 3\n", 5,
             "Functions[0].EventInvokeConfig.MaximumRetryAttempts: 3 is out of range 0..2");
    LOAD_BAD(FN "    EventInvokeConfig:\n      MaximumEventAgeInSeconds: 59\n", 5,
             "MaximumEventAgeInSeconds: 59 is out of range 60..21600");
    LOAD_BAD(FN "    EventInvokeConfig:\n      MaximumEventAgeInSeconds: 21601\n", 5,
             "MaximumEventAgeInSeconds: 21601 is out of range 60..21600");
    LOAD_BAD(FN "    EventInvokeConfig:\n      RetryBaseDelaySeconds: 0\n", 5,
             "RetryBaseDelaySeconds: 0 is out of range: must be > 0 and <= 3600");
    LOAD_BAD(FN "    EventInvokeConfig:\n      RetryBaseDelaySeconds: 3600.5\n", 5,
             "RetryBaseDelaySeconds: 3600.5 is out of range");
    LOAD_BAD(FN "    Handler: ''\n", 4, "Functions[0].Handler: length 0 is out of range 1..128");
    LOAD_BAD(FN "    Handler: 'a b'\n", 4, "must not contain whitespace");
    LOAD_BAD(FN "    Runtime: ''\n", 4, "Functions[0].Runtime: length 0 is out of range");
    LOAD_BAD("Listen: 127.0.0.1:65536\n", 1, "Listen: \"127.0.0.1:65536\" is not host:port");
    LOAD_BAD("Listen: 127.0.0.1\n", 1, "is not host:port");
    LOAD_BAD("Listen: ':80'\n", 1, "is not host:port");
    LOAD_BAD("LogLevel: TRACE\n", 1, "LogLevel: \"TRACE\" is not one of DEBUG, INFO, WARN, ERROR");
    LOAD_BAD("StateDir: ''\n", 1, "StateDir: must not be empty");
}

static void test_functions(const struct tctx *t)
{
    LOAD_BAD("Functions:\n  - Command: [run]\n    Timeout: 3\n", 2,
             "Functions[0]: missing required key FunctionName");
    LOAD_BAD("Functions:\n  - FunctionName: f\n", 2, "Functions[0]: missing required key Command");
    LOAD_BAD("Functions:\n  - FunctionName: 'a.b'\n    Command: [run]\n", 2,
             "Functions[0].FunctionName: \"a.b\" must match [A-Za-z0-9_-]{1,64}");
    LOAD_BAD("Functions:\n"
             "  - FunctionName: f\n"
             "    Command: [run]\n"
             "  - FunctionName: g\n"
             "    Command: [run]\n"
             "  - Command: [run]\n"
             "    FunctionName: f\n",
             7, "Functions[2].FunctionName: duplicate function name f (Functions[0])");
    LOAD_BAD(FN "    CodeUri: ./nope\n", 4, "Functions[0].CodeUri: ./nope");
    LOAD_BAD(FN "    CodeUri: ./ok.yaml\n", 4, "is not a directory");
}

static void test_environment(const struct tctx *t)
{
    char text[8192];
    struct br_config *cfg;
    int n;

    LOAD_BAD(FN "    Environment:\n      Variables:\n        AWS_REGION: x\n", 6,
             "Functions[0].Environment.Variables.AWS_REGION: AWS_REGION is reserved");
    LOAD_BAD(FN "    Environment:\n      Variables: {_HANDLER: x}\n", 5, "_HANDLER is reserved");
    LOAD_BAD(FN "    Environment:\n      Variables: {AWS_LAMBDA_RUNTIME_API: x}\n", 5,
             "is reserved");
    LOAD_BAD(FN "    Environment:\n      Variables: {LAMBDA_TASK_ROOT: x}\n", 5, "is reserved");
    LOAD_BAD(FN "    Environment:\n      Variables: {1AB: x}\n", 5,
             "Variables.1AB: the name must match [a-zA-Z][a-zA-Z0-9_]+");
    LOAD_BAD(FN "    Environment:\n      Variables: {X: x}\n", 5, "the name must match");
    LOAD_BAD(FN "    Environment:\n      Variables: {A-B: x}\n", 5, "the name must match");
    LOAD_BAD(FN "    Environment:\n      Variables:\n        AB: x\n        AB: y\n", 7,
             "duplicate variable (first on line 6)");

    /* exactly 4096 bytes of names and values load; one more byte does not */
    n = snprintf(text, sizeof(text), FN "    Environment:\n      Variables:\n        AB: '%0*d'\n",
                 4094, 0);
    T_ASSERT(n > 0 && (size_t)n < sizeof(text));
    cfg = load_ok(t, text);
    T_EQ_INT(strlen(cfg->functions[0].env[0].value), 4094);
    br_config_free(cfg);
    snprintf(text, sizeof(text),
             FN "    Environment:\n      Variables:\n        AB: '%0*d'\n        CD: ''\n", 4094,
             0);
    LOAD_BAD(text, 5, "Functions[0].Environment.Variables: 4098 bytes of names and values "
                      "exceed Lambda's 4 KB limit (4096)");
}

static void test_destinations(const struct tctx *t)
{
#define DEST(uri) FN "    EventInvokeConfig:\n      DestinationConfig:\n" \
                     "        OnFailure:\n          Destination: " uri "\n"
    static const char *bad[] = {
        DEST("sqs://queue"),
        DEST("arn:aws:sqs:us-east-1:123456789012:dlq"),
        DEST("'file://relative.jsonl'"),
        DEST("'file:///'"),
        DEST("'file:///tmp/dir/'"),
        DEST("'redis://localhost/stream'"),
        DEST("'redis://localhost:6379'"),
        DEST("'redis://localhost:6379/'"),
        DEST("'redis://localhost:0/s'"),
        DEST("'redis://localhost:6379/x/s'"),
        DEST("'redis://localhost:6379/1/s/t'"),
        DEST("'function:bad name'"),
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        load_bad_at(t, bad[i], 7, "Functions[0].EventInvokeConfig.DestinationConfig.OnFailure."
                               "Destination: ", bad[i]);
    LOAD_BAD(DEST("sqs://queue"), 7, "\"sqs://queue\" is not a supported destination");
    LOAD_BAD(DEST("function:ghost"), 7, "\"function:ghost\" names no function of this file");
    LOAD_BAD(DEST("''"), 7, "is not a supported destination");
    LOAD_BAD(DEST("[x]"), 7, "expected a string, got a list");
    LOAD_BAD(FN "    EventInvokeConfig:\n      DestinationConfig:\n        OnFailure: x\n", 6,
             "OnFailure: expected a map, got a string");
#undef DEST
}

static void test_listen_and_concurrency(const struct tctx *t)
{
    struct br_config *cfg;

    LOAD_BAD("LogLevel: INFO\nListen: 0.0.0.0:9070\n", 2,
             "Listen: 0.0.0.0:9070 is not a loopback address; set AllowNonLoopbackListen: true");
    LOAD_BAD("Listen: example.com:80\nAllowNonLoopbackListen: false\n", 1,
             "is not a loopback address");
    LOAD_BAD("Listen: '[::]:80'\n", 1, "is not a loopback address");

    /* with AccountConcurrency 1000, at most 900 may be reserved */
    cfg = load_ok(t, "Functions:\n"
                  "  - {FunctionName: a, Command: [x], ReservedConcurrentExecutions: 500}\n"
                  "  - {FunctionName: b, Command: [x], ReservedConcurrentExecutions: 400}\n");
    br_config_free(cfg);
    LOAD_BAD("Functions:\n"
             "  - {FunctionName: a, Command: [x], ReservedConcurrentExecutions: 500}\n"
             "  - FunctionName: b\n"
             "    Command: [x]\n"
             "    ReservedConcurrentExecutions: 401\n",
             5, "Functions[1].ReservedConcurrentExecutions: functions reserve 901 in total, "
                "leaving 99 of AccountConcurrency 1000 unreserved; at least 100 must stay "
                "unreserved");
    /* below 100 the whole account may be reserved, but not more */
    cfg = load_ok(t, "AccountConcurrency: 10\n"
                  "Functions:\n"
                  "  - {FunctionName: a, Command: [x], ReservedConcurrentExecutions: 6}\n"
                  "  - {FunctionName: b, Command: [x], ReservedConcurrentExecutions: 4}\n");
    br_config_free(cfg);
    LOAD_BAD("Functions:\n"
             "  - {FunctionName: a, Command: [x], ReservedConcurrentExecutions: 6}\n"
             "  - {FunctionName: b, Command: [x], ReservedConcurrentExecutions: 5}\n"
             "AccountConcurrency: 10\n",
             3, "functions reserve 11 in total, more than AccountConcurrency 10");
}

static void test_file_level(const struct tctx *t)
{
    char path[PATH_MAX], *err = NULL;
    struct br_config *cfg = NULL;
    int rc;

    LOAD_BAD("Listen: 127.0.0.1:1\nFunctions:\n  - FunctionName: [f\n", 4, "YAML syntax error");
    LOAD_BAD("Listen: a\n  b: c\n", 2, "YAML syntax error");
    LOAD_BAD("Listen: *nope\n", 1, "YAML syntax error: found undefined alias");
    LOAD_BAD("Listen: x\nLogLevel: \x01\n", 2, "YAML syntax error: control characters");
    LOAD_BAD("Listen: x\n\nLogLevel: \xff\n", 3, "YAML syntax error: invalid leading UTF-8");
    LOAD_BAD("Listen: \"\\x01:1\"\n", 1, "Listen: \"\\x01:1\" is not host:port");
    LOAD_BAD("", 1, "the file is empty");
    LOAD_BAD("# only a comment\n", 1, "the file is empty");
    LOAD_BAD("Listen: 127.0.0.1:1\n---\nListen: 127.0.0.1:2\n", 2,
             "only one YAML document is allowed per file");

    snprintf(path, sizeof(path), "%s/missing.yaml", t->conf);
    rc = br_config_load(path, &cfg, &err);
    T_EQ_INT(rc, SL_ECONFIG);
    T_ASSERT(cfg == NULL);
    T_CONTAINS(err, "missing.yaml: cannot open: No such file or directory");
    free(err);

    /* anchors and aliases are plain YAML and work */
    cfg = load_ok(t, "Functions:\n"
                  "  - &base {FunctionName: a, Command: [x], Timeout: 7}\n"
                  "  - FunctionName: b\n"
                  "    Command: [y]\n"
                  "    Timeout: 7\n");
    T_EQ_INT(cfg->functions[0].timeout_s, 7);
    br_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* Event source mappings.                                                                   */
/* ---------------------------------------------------------------------------------------- */

#define ESM_ARN                                                                              \
    "redis://127.0.0.1:6379/orders?VisibilityTimeout=30&maxReceiveCount=5&deadLetterTarget="  \
    "orders-dlq"

/* The issue's example, whole. */
static const char esm_issue_example[] =
    "Functions:\n"
    "  - FunctionName: orders\n"
    "    Command: [\"./build/examples/echo-runtime\"]\n"
    "    Handler: echo.handler\n"
    "EventSourceMappings:\n"
    "  - FunctionName: orders\n"
    "    EventSourceArn: " ESM_ARN "\n"
    "    BatchSize: 10\n"
    "    MaximumBatchingWindowInSeconds: 0\n"
    "    FunctionResponseTypes: [ReportBatchItemFailures]\n"
    "    ScalingConfig: {MaximumConcurrency: 50}\n"
    "    Enabled: true\n";

static void test_mappings(const struct tctx *t)
{
    struct br_config *cfg;
    const struct pl_mapping_config *mc;
    char uuid[37];

    cfg = load_ok(t, esm_issue_example);
    T_EQ_INT(cfg->nmappings, 1);
    mc = &cfg->mappings[0];
    T_EQ_STR(mc->function_name, "orders");
    T_EQ_STR(mc->event_source_arn, ESM_ARN);
    T_EQ_INT(mc->batch_size, 10);
    T_ASSERT(mc->window_s == 0.0);
    T_EQ_INT(mc->enabled, 1);
    T_EQ_INT(mc->report_batch_item_failures, 1);
    T_EQ_INT(mc->max_concurrency, 50);
    pl_mapping_derive_uuid("orders", ESM_ARN, uuid);
    T_EQ_STR(mc->uuid, uuid);
    T_EQ_STR(mc->uuid, "441a58cf-6cc3-5b55-a6cd-189639aaa658");
    br_config_free(cfg);

    /* defaults are left to the source (0 and -1); mappings may come before Functions; a
     * given UUID is kept (in lowercase); the credentials do not change the derived one */
    cfg = load_ok(t, "EventSourceMappings:\n"
                  "  - FunctionName: a\n"
                  "    EventSourceArn: 'redis://:pw@cache.local/2/jobs'\n"
                  "  - EventSourceArn: redis://cache.local/2/jobs\n"
                  "    FunctionName: b\n"
                  "    UUID: 6BA7B810-9DAD-51D1-80B4-00C04FD430C8\n"
                  "    Enabled: false\n"
                  "    BatchSize: 10000\n"
                  "    MaximumBatchingWindowInSeconds: 300\n"
                  "    FunctionResponseTypes: []\n"
                  "    ScalingConfig: {}\n"
                  "  - {FunctionName: b, EventSourceArn: 'redis://cache.local/2/other', "
                  "ScalingConfig: {MaximumConcurrency: 1000}}\n"
                  "Functions:\n"
                  "  - {FunctionName: a, Command: [x]}\n"
                  "  - {FunctionName: b, Command: [x]}\n");
    T_EQ_INT(cfg->nmappings, 3);
    mc = &cfg->mappings[0];
    T_EQ_STR(mc->function_name, "a");
    T_EQ_STR(mc->event_source_arn, "redis://:pw@cache.local/2/jobs");
    T_EQ_INT(mc->batch_size, 0);
    T_ASSERT(mc->window_s < 0);
    T_EQ_INT(mc->enabled, 1);
    T_EQ_INT(mc->report_batch_item_failures, 0);
    T_EQ_INT(mc->max_concurrency, 0);
    pl_mapping_derive_uuid("a", "redis://cache.local/2/jobs", uuid);
    T_EQ_STR(mc->uuid, uuid);
    mc = &cfg->mappings[1];
    T_EQ_STR(mc->function_name, "b");
    T_EQ_STR(mc->uuid, "6ba7b810-9dad-51d1-80b4-00c04fd430c8");
    T_EQ_INT(mc->enabled, 0);
    T_EQ_INT(mc->batch_size, 10000);
    T_ASSERT(mc->window_s == 300.0);
    T_EQ_INT(mc->report_batch_item_failures, 0);
    T_EQ_INT(mc->max_concurrency, 0);
    mc = &cfg->mappings[2];
    T_EQ_INT(mc->max_concurrency, 1000);
    T_ASSERT(strcmp(mc->uuid, cfg->mappings[0].uuid) != 0);
    br_config_free(cfg);

    cfg = load_ok(t, FN "EventSourceMappings: []\n");
    T_EQ_INT(cfg->nmappings, 0);
    T_ASSERT(cfg->mappings == NULL);
    br_config_free(cfg);
    cfg = load_ok(t, FN);
    T_EQ_INT(cfg->nmappings, 0);
    br_config_free(cfg);
}

/* FN plus one mapping of f on ARN (line 5 is FunctionName, 6 EventSourceArn, then lines). */
#define ESM(lines) FN "EventSourceMappings:\n  - FunctionName: f\n    EventSourceArn: " \
                      "redis://127.0.0.1:6379/orders\n" lines
#define ESM_AT(arn) FN "EventSourceMappings:\n  - FunctionName: f\n    EventSourceArn: " arn "\n"

static void test_mapping_errors(const struct tctx *t)
{
    /* shape */
    LOAD_BAD(FN "EventSourceMappings:\n  FunctionName: f\n", 4,
             "EventSourceMappings: expected a list, got a map");
    LOAD_BAD(FN "EventSourceMappings: [[f]]\n", 4, "EventSourceMappings[0]: expected a map, "
                                                  "got a list");
    LOAD_BAD(FN "EventSourceMappings:\n  - BatchSize: 5\n    EventSourceArn: redis://h/s\n", 5,
             "EventSourceMappings[0]: missing required key FunctionName");
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: f\n    BatchSize: 5\n", 5,
             "EventSourceMappings[0]: missing required key EventSourceArn");
    LOAD_BAD(ESM("    BatchSise: 5\n"), 7, "EventSourceMappings[0].BatchSise: unknown key");
    LOAD_BAD(ESM("    BatchSize: 5\n    BatchSize: 6\n"), 8,
             "duplicate key BatchSize (first on line 7)");

    /* FunctionName */
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: ghost\n    EventSourceArn: redis://h/s\n",
             5, "EventSourceMappings[0].FunctionName: \"ghost\" names no function of this file");
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: 'f:prod'\n", 5,
             "EventSourceMappings[0].FunctionName: \"f:prod\" must match [A-Za-z0-9_-]{1,64}");
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: 7\n", 5,
             "EventSourceMappings[0].FunctionName: expected a string, got an integer");

    /* types and ranges, at the value's line */
    LOAD_BAD(ESM("    BatchSize: 0\n"), 7,
             "EventSourceMappings[0].BatchSize: 0 is out of range 1..10000");
    LOAD_BAD(ESM("    BatchSize: 10001\n    MaximumBatchingWindowInSeconds: 1\n"), 7,
             "EventSourceMappings[0].BatchSize: 10001 is out of range 1..10000");
    LOAD_BAD(ESM("    BatchSize: '5'\n"), 7, "BatchSize: expected an integer, got a string");
    LOAD_BAD(ESM("    MaximumBatchingWindowInSeconds: 301\n"), 7,
             "EventSourceMappings[0].MaximumBatchingWindowInSeconds: 301 is out of range 0..300");
    LOAD_BAD(ESM("    MaximumBatchingWindowInSeconds: -1\n"), 7, "-1 is out of range 0..300");
    LOAD_BAD(ESM("    MaximumBatchingWindowInSeconds: 0.5\n"), 7,
             "MaximumBatchingWindowInSeconds: expected an integer, got a number (0.5)");
    LOAD_BAD(ESM("    Enabled: 'yes'\n"), 7,
             "EventSourceMappings[0].Enabled: expected a boolean, got a string");
    LOAD_BAD(ESM("    FunctionResponseTypes: ReportBatchItemFailures\n"), 7,
             "EventSourceMappings[0].FunctionResponseTypes: expected a list, got a string");
    LOAD_BAD(ESM("    FunctionResponseTypes: [ReportItemFailures]\n"), 7,
             "EventSourceMappings[0].FunctionResponseTypes[0]: \"ReportItemFailures\" is not a "
             "response type (the only one is ReportBatchItemFailures)");
    LOAD_BAD(ESM("    FunctionResponseTypes:\n      - ReportBatchItemFailures\n"
                 "      - ReportBatchItemFailures\n"),
             9, "EventSourceMappings[0].FunctionResponseTypes[1]: at most 1 item");
    LOAD_BAD(ESM("    ScalingConfig: {MaximumConcurrency: 1}\n"), 7,
             "EventSourceMappings[0].ScalingConfig.MaximumConcurrency: 1 is out of range 2..1000");
    LOAD_BAD(ESM("    ScalingConfig:\n      MaximumConcurrency: 1001\n"), 8,
             "ScalingConfig.MaximumConcurrency: 1001 is out of range 2..1000");
    LOAD_BAD(ESM("    ScalingConfig: {MinimumPollers: 2}\n"), 7,
             "EventSourceMappings[0].ScalingConfig.MinimumPollers: unknown key (known keys "
             "here: MaximumConcurrency)");
    LOAD_BAD(ESM("    UUID: not-a-uuid\n"), 7,
             "EventSourceMappings[0].UUID: \"not-a-uuid\" is not a UUID (36 characters: "
             "8-4-4-4-12 hexadecimal digits)");
    LOAD_BAD(ESM("    UUID: 6ba7b810-9dad-51d1-80b4-00c04fd430c8a\n"), 7, "is not a UUID");
    LOAD_BAD(ESM_AT("''"), 6, "EventSourceMappings[0].EventSourceArn: must not be empty");
    LOAD_BAD(ESM_AT("[redis://h/s]"), 6,
             "EventSourceMappings[0].EventSourceArn: expected a string, got a list");

    /* BatchSize above 10 without a window: Lambda's rule, at the BatchSize line */
    LOAD_BAD(ESM("    Enabled: true\n    BatchSize: 11\n"), 8,
             "EventSourceMappings[0].BatchSize: 11 is above 10, which needs "
             "MaximumBatchingWindowInSeconds of at least 1");
    LOAD_BAD(ESM("    BatchSize: 100\n    MaximumBatchingWindowInSeconds: 0\n"), 7,
             "BatchSize: 100 is above 10");

    /* the source URI, at the EventSourceArn line; the password never shows */
    LOAD_BAD(ESM_AT("'redis://h/s?VisibilityTimeout=50000'"), 6,
             "EventSourceMappings[0].EventSourceArn: VisibilityTimeout: 50000 is out of range "
             "0..43200");
    LOAD_BAD(ESM_AT("'redis://h/s?foo=1'"), 6,
             "EventSourceMappings[0].EventSourceArn: unknown query key 'foo'");
    LOAD_BAD(ESM_AT("'redis://127.0.0.1:6379/'"), 6,
             "EventSourceMappings[0].EventSourceArn: missing stream name");
    LOAD_BAD(ESM_AT("'redis://127.0.0.1:70000/s'"), 6,
             "EventSourceMappings[0].EventSourceArn: port '70000': must be a number 1..65535");
    LOAD_BAD(ESM_AT("'redis://h/s?maxReceiveCount=5'"), 6,
             "maxReceiveCount and deadLetterTarget must come together");
    LOAD_BAD(ESM_AT("'kafka://broker:9092/orders'"), 6,
             "EventSourceMappings[0].EventSourceArn: kafka:// sources are not supported by this "
             "build yet");
    LOAD_BAD(ESM_AT("'postgres://db/app'"), 6,
             "postgres:// sources are not supported by this build yet");
    LOAD_BAD(ESM_AT("'sqs://orders'"), 6, "EventSourceMappings[0].EventSourceArn: unsupported "
                                          "source scheme 'sqs'");
    LOAD_BAD(ESM_AT("arn:aws:sqs:us-east-1:123456789012:orders"), 6,
             "EventSourceArn: not a source URI");
    {
        char path[PATH_MAX], *err = NULL;
        struct br_config *cfg = NULL;

        write_conf(t, "secret.yaml", ESM_AT("'redis://u:hunter2@h:1/s?tls=maybe'"), path,
                   sizeof(path));
        T_EQ_INT(br_config_load(path, &cfg, &err), SL_ECONFIG);
        T_CONTAINS(err, "tls: 'maybe' must be true or false");
        T_ASSERT(strstr(err, "hunter2") == NULL);
        free(err);
    }

    /* Lambda keys that do not apply, refused by name at their line */
    LOAD_BAD(ESM("    BatchSize: 5\n    StartingPosition: LATEST\n"), 8,
             "EventSourceMappings[0].StartingPosition: StartingPosition does not apply to "
             "redis:// sources");
    LOAD_BAD(ESM("    MaximumRetryAttempts: 2\n"), 7,
             "MaximumRetryAttempts does not apply to redis:// sources (queue semantics");
    LOAD_BAD(ESM("    BisectBatchOnFunctionError: true\n"), 7,
             "BisectBatchOnFunctionError does not apply to redis:// sources (queue semantics");
    LOAD_BAD(ESM("    MaximumRecordAgeInSeconds: 60\n"), 7, "redrive policy");
    LOAD_BAD(ESM("    ParallelizationFactor: 2\n"), 7,
             "ParallelizationFactor does not apply to redis:// sources");
    LOAD_BAD(ESM("    DestinationConfig:\n      OnFailure: {Destination: 'redis://h:1/d'}\n"), 7,
             "EventSourceMappings[0].DestinationConfig: DestinationConfig does not apply to "
             "redis:// sources (queue semantics");
    LOAD_BAD(ESM("    Topics: [orders]\n"), 7,
             "Topics is for Kafka sources, which this build does not support yet");
    LOAD_BAD(ESM("    SelfManagedEventSource: {}\n"), 7, "SelfManagedEventSource is for Kafka");
    LOAD_BAD(ESM("    FilterCriteria: {}\n"), 7,
             "FilterCriteria is not supported by this build yet");
    /* for a source this build refuses anyway, the key is merely not supported yet */
    LOAD_BAD(FN "EventSourceMappings:\n  - FunctionName: f\n    StartingPosition: LATEST\n"
                "    EventSourceArn: kafka://b:9092/t\n",
             6, "StartingPosition: StartingPosition is not supported by this build yet");

    /* duplicates */
    LOAD_BAD(ESM("  - FunctionName: f\n    EventSourceArn: redis://127.0.0.1:6379/orders\n"), 8,
             "EventSourceMappings[1].EventSourceArn: function f already has a mapping of this "
             "source (EventSourceMappings[0])");
    LOAD_BAD(ESM("    UUID: 6ba7b810-9dad-51d1-80b4-00c04fd430c8\n"
                 "  - FunctionName: f\n    EventSourceArn: redis://127.0.0.1:6379/other\n"
                 "    UUID: 6BA7B810-9DAD-51D1-80B4-00C04FD430C8\n"),
             10, "EventSourceMappings[1].UUID: duplicate UUID 6ba7b810-9dad-51d1-80b4-00c04fd430c8 "
                 "(EventSourceMappings[0])");
    /* a given UUID that another mapping derives: reported where the derived one comes from */
    {
        char text[1024], uuid[37];

        pl_mapping_derive_uuid("f", "redis://127.0.0.1:6379/orders", uuid);
        snprintf(text, sizeof(text),
                 FN "EventSourceMappings:\n"
                    "  - {FunctionName: f, EventSourceArn: 'redis://h/x', UUID: %s}\n"
                    "  - FunctionName: f\n"
                    "    EventSourceArn: redis://127.0.0.1:6379/orders\n",
                 uuid);
        LOAD_BAD(text, 7, "EventSourceMappings[1].EventSourceArn: duplicate UUID");
    }
    /* the same stream with another function, or through another database, is fine */
    {
        struct br_config *cfg = load_ok(
            t, "Functions:\n  - {FunctionName: f, Command: [x]}\n"
               "  - {FunctionName: g, Command: [x]}\n"
               "EventSourceMappings:\n"
               "  - {FunctionName: f, EventSourceArn: 'redis://h/s'}\n"
               "  - {FunctionName: g, EventSourceArn: 'redis://h/s'}\n"
               "  - {FunctionName: f, EventSourceArn: 'redis://h/1/s'}\n");
        T_EQ_INT(cfg->nmappings, 3);
        br_config_free(cfg);
    }
}

/* T_RUN for tests that take the context. */
#define RUN(fn, ctx)                                                                         \
    do {                                                                                     \
        fprintf(stderr, "-- %s\n", #fn);                                                     \
        fn(ctx);                                                                             \
    } while (0)

int main(void)
{
    struct tctx t;

    setup(&t);
    RUN(test_issue_example, &t);
    RUN(test_defaults, &t);
    RUN(test_everything_set, &t);
    RUN(test_unknown_keys, &t);
    RUN(test_wrong_types, &t);
    RUN(test_ranges, &t);
    RUN(test_functions, &t);
    RUN(test_environment, &t);
    RUN(test_destinations, &t);
    RUN(test_listen_and_concurrency, &t);
    RUN(test_file_level, &t);
    RUN(test_mappings, &t);
    RUN(test_mapping_errors, &t);
    teardown(&t);
    fprintf(stderr, "test_config: all passed\n");
    return 0;
}

/*
 * broker_config.c - the YAML configuration file parsed into struct br_config.
 *
 * The file is read into memory and handed to libyaml's document API (yaml_parser_load), which
 * gives a node graph with a mark (line, column) on every node. The graph is then walked with
 * one table of known keys per map (struct cfg_key): a key not in the table is an error, and
 * each entry names its setter, the field it fills and, for numbers, the accepted range. The
 * first problem stops the walk and becomes "FILE:LINE: Key.Path: reason"; everything built
 * so far is freed, so the caller gets a complete config or nothing.
 *
 * Scalars are typed the way PyYAML (and so schemas/config.schema.json) types them, because
 * the schema test validates the same files with Python: a plain `3` is an integer, `"3"` is
 * a string, `true`/`yes`/`on` are booleans, `~`/`null`/empty are null. A string field given a
 * number is a type error (quote it), a number field given a string is too.
 *
 * Decisions recorded here and in the schema:
 *   - Handler is optional, default "index.handler" (Lambda's own console default).
 *   - Environment values may be any non-null scalar and are kept as written (`PORT: 8080` is
 *     "8080"), as CloudFormation does; maps, lists and null are refused.
 *   - EventSourceMappings are read after Functions (a mapping names a function of this file)
 *     and each is checked by pl_mapping_validate, the pollers' own rules, whose message becomes
 *     "FILE:LINE: EventSourceMappings[i].Field: reason" at the line of the field it names.
 *     Lambda's mapping keys that this build has no use for (StartingPosition,
 *     MaximumRetryAttempts, DestinationConfig, Topics, ...) are refused by name with the
 *     reason (a queue source retries through its redrive policy), not as unknown keys. Two
 *     mappings of one function to the same EventSourceArn, or two with one UUID, are refused.
 *   - file:// destinations take an absolute path (file:///var/dlq.jsonl); file://./x and
 *     file://../x are accepted as a convenience and stored resolved against the config folder.
 *   - Relative paths are joined onto the config folder (itself a realpath) with only their
 *     leading "./" and "../" collapsed; Command paths are never realpath'd, so a symlinked
 *     interpreter (a virtualenv's bin/python) keeps its name.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "broker/broker.h"
#include "broker/broker_internal.h"
#include "invoker/invoker.h"
#include "pollers/pollers.h"

#define CFG_FILE_MAX (4u * 1024u * 1024u) /* a config file is a few KB; refuse anything odd */
#define CFG_ENV_MAX 4096                  /* Lambda's 4 KB: bytes of names plus values */
#define CFG_MAX_KEYS 32                   /* the largest key table below */
#define CFG_ERR_MAX 512                   /* pl_mapping_validate's sentence */
#define CFG_DEFAULT_LISTEN "127.0.0.1:9070"
#define CFG_DEFAULT_HANDLER "index.handler"
#define CFG_DEFAULT_LOG_LEVEL "INFO"
#define CFG_DEFAULT_ACCOUNT_CONCURRENCY 1000
#define CFG_UNRESERVED_MIN 100 /* Lambda keeps at least this much of the account unreserved */

/* What a node holds, as a YAML 1.1 resolver (PyYAML) would type it. */
enum cfg_kind { CK_NULL, CK_BOOL, CK_INT, CK_FLOAT, CK_STR, CK_MAP, CK_LIST };

struct cfg_ctx;
struct cfg_key;

/* A setter checks val and stores it in obj (the struct the key table describes). */
typedef int (*cfg_set_fn)(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                          const struct cfg_key *k);

struct cfg_key {
    const char *name;
    cfg_set_fn set;
    size_t offset;              /* field in obj written by the generic setters */
    double min, max;            /* ranges of set_int / set_num; max < 0: AccountConcurrency */
    bool min_open;              /* set_num: value must be > min rather than >= min */
    const struct cfg_key *sub;  /* set_sub: the nested map's table, applied to obj + offset */
    size_t nsub;
    const char *why;            /* set_refused: why the key is refused, for redis:// sources */
};

struct cfg_ctx {
    yaml_document_t *doc;
    const char *file;          /* the path as the caller gave it: prefixes every message */
    const char *dir;           /* absolute, symlink-free folder of the file */
    struct br_config *cfg;
    char *err;                 /* the first error, malloc'd */
    char path[512];            /* key path of the node being read, "Functions[0].Timeout" */
    yaml_node_t *functions;    /* the Functions list, read after every top-level scalar */
    yaml_node_t *mappings;     /* the EventSourceMappings list, read after Functions */
    bool esm_redis;            /* the mapping being read has a redis:// (or no) source */
    const char **fn_names;     /* FunctionName of each item, borrowed from doc (function:X) */
    size_t nfn_names;
    long reserved_sum;         /* ReservedConcurrentExecutions so far, in file order */
    size_t key_line;           /* line of the key being applied ... */
    const yaml_node_t *key_val;/* ... and its value: type errors on a block value cite the key */
    char show[128];            /* shown(): the escaped value quoted in a message */
};

/* ---------------------------------------------------------------------------------------- */
/* Errors and key paths.                                                                    */
/* ---------------------------------------------------------------------------------------- */

static size_t node_line(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

static const char *node_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* Formats into a malloc'd string; NULL when out of memory. */
static char *cfg_vstrf(const char *fmt, va_list ap)
{
    va_list ap2;
    char *s;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *cfg_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *cfg_strf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = cfg_vstrf(fmt, ap);
    va_end(ap);
    return s;
}

/*
 * Records "FILE:LINE: path: reason" (line 0 leaves out LINE) as the first error. Returns
 * SL_ECONFIG, or SL_ENOMEM when the message itself could not be allocated.
 */
static int cfg_err(struct cfg_ctx *c, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_err(struct cfg_ctx *c, size_t line, const char *fmt, ...)
{
    char lbuf[32] = "";
    va_list ap;
    char *reason;

    if (c->err)
        return SL_ECONFIG;
    va_start(ap, fmt);
    reason = cfg_vstrf(fmt, ap);
    va_end(ap);
    if (!reason)
        return SL_ENOMEM;
    if (line > 0)
        snprintf(lbuf, sizeof(lbuf), "%zu:", line);
    c->err = cfg_strf("%s:%s %s%s%s", c->file, lbuf, c->path, c->path[0] ? ": " : "", reason);
    free(reason);
    return c->err ? SL_ECONFIG : SL_ENOMEM;
}

/* Appends a segment to the key path; returns the length to restore with path_pop. */
static size_t path_push(struct cfg_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t path_push(struct cfg_ctx *c, const char *fmt, ...)
{
    size_t len = strlen(c->path);
    va_list ap;

    /* XXX: a path longer than the buffer is cut short in messages; nothing else reads it. */
    va_start(ap, fmt);
    vsnprintf(c->path + len, sizeof(c->path) - len, fmt, ap);
    va_end(ap);
    return len;
}

static void path_pop(struct cfg_ctx *c, size_t len)
{
    c->path[len] = '\0';
}

/* A short, escaped rendering of a scalar for messages. */
static const char *node_show(const yaml_node_t *n, char *buf, size_t bufsz)
{
    if (n->type != YAML_SCALAR_NODE)
        return n->type == YAML_MAPPING_NODE ? "a map" : "a list";
    return sl_log_escape(n->data.scalar.value, n->data.scalar.length, buf, bufsz);
}

/* The value of n, escaped and cut short, for a message (one per message: it is c->show). */
static const char *shown(struct cfg_ctx *c, const yaml_node_t *n)
{
    return node_show(n, c->show, sizeof(c->show));
}

/* ---------------------------------------------------------------------------------------- */
/* Scalar typing.                                                                           */
/* ---------------------------------------------------------------------------------------- */

static bool str_in(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static const char *const cfg_true_words[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                             "on",   "On",   "ON",   NULL};
static const char *const cfg_false_words[] = {"false", "False", "FALSE", "no", "No", "NO",
                                              "off",   "Off",   "OFF",   NULL};
static const char *const cfg_null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const cfg_special_floats[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
                                                 "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
                                                 ".NaN",  ".NAN",  NULL};

/* [-+]?[0-9]+ */
static bool is_int_text(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* [-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)? or a special float. */
static bool is_float_text(const char *s)
{
    size_t before = 0, after = 0;

    if (str_in(s, cfg_special_floats))
        return true;
    if (*s == '-' || *s == '+')
        s++;
    for (; *s >= '0' && *s <= '9'; s++)
        before++;
    if (*s != '.')
        return false;
    for (s++; *s >= '0' && *s <= '9'; s++)
        after++;
    if (before + after == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static enum cfg_kind node_kind(const yaml_node_t *n)
{
    const char *s;

    if (n->type == YAML_MAPPING_NODE)
        return CK_MAP;
    if (n->type == YAML_SEQUENCE_NODE)
        return CK_LIST;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return CK_STR;
    s = node_text(n);
    if (str_in(s, cfg_null_words))
        return CK_NULL;
    if (str_in(s, cfg_true_words) || str_in(s, cfg_false_words))
        return CK_BOOL;
    if (is_int_text(s))
        return CK_INT;
    if (is_float_text(s))
        return CK_FLOAT;
    return CK_STR;
}

static const char *kind_name(enum cfg_kind k)
{
    switch (k) {
    case CK_NULL:
        return "null";
    case CK_BOOL:
        return "a boolean";
    case CK_INT:
        return "an integer";
    case CK_FLOAT:
        return "a number";
    case CK_STR:
        return "a string";
    case CK_MAP:
        return "a map";
    case CK_LIST:
        return "a list";
    }
    return "?";
}

static int type_err(struct cfg_ctx *c, const yaml_node_t *n, const char *want)
{
    enum cfg_kind k = node_kind(n);
    size_t line = node_line(n);
    char buf[80];

    /* A block map or list starts on the line after its key, and an empty (null) value may be
     * marked there too: the key's line is where the reader looks. */
    if (n == c->key_val && (k == CK_NULL || k == CK_MAP || k == CK_LIST))
        line = c->key_line;
    if (k == CK_STR)
        return cfg_err(c, line, "expected %s, got a string (\"%s\")", want,
                       node_show(n, buf, sizeof(buf)));
    if (n->type == YAML_SCALAR_NODE && k != CK_NULL)
        return cfg_err(c, line, "expected %s, got %s (%s)", want, kind_name(k),
                       node_show(n, buf, sizeof(buf)));
    return cfg_err(c, line, "expected %s, got %s", want, kind_name(k));
}

/* "010" is octal to YAML 1.1 readers (PyYAML) and decimal to strtol: refuse the ambiguity. */
static bool has_leading_zero(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    return s[0] == '0' && s[1] >= '0' && s[1] <= '9';
}

/* A string value: quoted anything, or a plain scalar that is not a null/bool/number. */
static int get_str(struct cfg_ctx *c, const yaml_node_t *n, const char **out)
{
    *out = ""; /* set on every path: the compiler cannot see that errors are negative */
    if (node_kind(n) != CK_STR)
        return type_err(c, n, "a string");
    if (strlen(node_text(n)) != n->data.scalar.length)
        return cfg_err(c, node_line(n), "strings must not contain NUL bytes");
    *out = node_text(n);
    return 0;
}

/* An integer within [min, max]; out-of-range messages quote the value as written. */
static int get_int(struct cfg_ctx *c, const yaml_node_t *n, long min, long max, long *out)
{
    const char *s;
    char *end;
    long v;

    *out = 0;
    if (node_kind(n) != CK_INT)
        return type_err(c, n, "an integer");
    s = node_text(n);
    if (has_leading_zero(s))
        return cfg_err(c, node_line(n), "%s: leading zeros are not allowed (YAML 1.1 reads "
                       "them as octal)", s);
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno == ERANGE || *end || v < min || v > max)
        return cfg_err(c, node_line(n), "%s is out of range %ld..%ld", s, min, max);
    *out = v;
    return 0;
}

/* An integer or a decimal number (not .inf/.nan) within the key's range. */
static int get_num(struct cfg_ctx *c, const yaml_node_t *n, const struct cfg_key *k,
                   double *out)
{
    enum cfg_kind kind = node_kind(n);
    const char *s;
    double v;

    if (kind != CK_INT && kind != CK_FLOAT)
        return type_err(c, n, "a number");
    s = node_text(n);
    if (has_leading_zero(s))
        return cfg_err(c, node_line(n), "%s: leading zeros are not allowed (YAML 1.1 reads "
                       "them as octal)", s);
    v = str_in(s, cfg_special_floats) ? NAN : strtod(s, NULL);
    if (!isfinite(v) || (k->min_open ? v <= k->min : v < k->min) || v > k->max) {
        if (k->min_open)
            return cfg_err(c, node_line(n), "%s is out of range: must be > %g and <= %g", s,
                           k->min, k->max);
        return cfg_err(c, node_line(n), "%s is out of range %g..%g", s, k->min, k->max);
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Paths.                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/*
 * Joins rel onto base (absolute and symlink-free), collapsing rel's leading "./" and "../"
 * segments against base; because base has no symlinks this is what the kernel would do.
 * Absolute rel is copied. Trailing slashes are dropped. Returns a malloc'd path or NULL.
 */
static char *path_join(const char *base, const char *rel)
{
    size_t blen, rlen;
    char *out;

    if (rel[0] == '/')
        return strdup(rel);
    blen = strlen(base);
    for (;;) {
        if (strncmp(rel, "./", 2) == 0) {
            rel += 2;
        } else if (strcmp(rel, ".") == 0) {
            rel += 1;
        } else if (strncmp(rel, "../", 3) == 0 || strcmp(rel, "..") == 0) {
            rel += rel[2] ? 3 : 2;
            while (blen > 1 && base[blen - 1] != '/')
                blen--;
            if (blen > 1)
                blen--; /* the slash itself, unless it is the root's */
        } else {
            break;
        }
        while (*rel == '/')
            rel++;
    }
    rlen = strlen(rel);
    while (rlen > 0 && rel[rlen - 1] == '/')
        rlen--;
    out = malloc(blen + 1 + rlen + 1);
    if (!out)
        return NULL;
    memcpy(out, base, blen);
    if (rlen > 0) {
        if (blen == 0 || out[blen - 1] != '/')
            out[blen++] = '/';
        memcpy(out + blen, rel, rlen);
        blen += rlen;
    }
    out[blen] = '\0';
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Validators shared with the schema (keep the patterns there in step).                     */
/* ---------------------------------------------------------------------------------------- */

/* [A-Za-z0-9_-]{1,64} */
static bool valid_function_name(const char *s)
{
    size_t n = strlen(s), i;

    if (n < 1 || n > 64)
        return false;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* [a-zA-Z]([a-zA-Z0-9_])+ */
static bool valid_env_name(const char *s)
{
    size_t i;

    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) || !s[1])
        return false;
    for (i = 1; s[i]; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

/* Names Lambda sets itself and refuses in a function's configuration (Sluice sets them). */
static const char *const cfg_reserved_env[] = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
    "TZ",
    NULL,
};

/* Decimal port without leading zeros, 0..65535 (min 1 when !allow_zero). */
static bool valid_port(const char *s, size_t n, bool allow_zero)
{
    long v = 0;
    size_t i;

    if (n < 1 || n > 5 || (s[0] == '0' && n > 1))
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 && (allow_zero || v > 0);
}

/*
 * host[:port] check for "host:port": host is a name or IPv4 literal ([A-Za-z0-9][A-Za-z0-9.-]*,
 * at most 253) or a bracketed IPv6 literal. *loopback tells whether host is 127.0.0.0/8,
 * "localhost" or [::1]; any other name counts as remote (it is not resolved here).
 */
static bool valid_host(const char *h, size_t n, bool *loopback)
{
    char buf[256];
    unsigned char addr[16];
    size_t i;

    *loopback = false;
    if (n == 0 || n >= sizeof(buf))
        return false;
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']')
            return false;
        memcpy(buf, h + 1, n - 2);
        buf[n - 2] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return false;
        *loopback = memcmp(addr, &in6addr_loopback, sizeof(addr)) == 0;
        return true;
    }
    if (n > 253)
        return false;
    for (i = 0; i < n; i++) {
        char ch = h[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '.' && ch != '-')))
            return false;
    }
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        *loopback = addr[0] == 127;
    else
        *loopback = strcmp(buf, "localhost") == 0;
    return true;
}

/* "host:port"; the port may be 0 (pick a free one). */
static bool valid_listen(const char *s, bool *loopback)
{
    const char *colon = strrchr(s, ':');

    if (!colon)
        return false;
    return valid_host(s, (size_t)(colon - s), loopback) &&
           valid_port(colon + 1, strlen(colon + 1), true);
}

/* redis://host:port/stream or redis://host:port/DB/stream */
static bool valid_redis_uri(const char *s)
{
    const char *auth = s + strlen("redis://"), *slash, *colon, *seg, *p;
    bool lo;

    slash = strchr(auth, '/');
    if (!slash)
        return false;
    colon = memrchr(auth, ':', (size_t)(slash - auth));
    if (!colon || !valid_host(auth, (size_t)(colon - auth), &lo) ||
        !valid_port(colon + 1, (size_t)(slash - colon - 1), false))
        return false;
    seg = slash + 1;
    p = strchr(seg, '/');
    if (p) {
        /* DB/stream: DB is a decimal database number */
        if (p == seg || p - seg > 9)
            return false;
        for (const char *d = seg; d < p; d++)
            if (*d < '0' || *d > '9')
                return false;
        seg = p + 1;
    }
    if (!*seg)
        return false;
    for (p = seg; *p; p++)
        if (*p == '/' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* The walker.                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int set_refused(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k);

/*
 * Applies table keys[0..nkeys) to the mapping node map, writing through obj. Refuses
 * non-mappings, non-scalar keys, duplicate keys and unknown keys. lines (nkeys entries, may be
 * NULL) receives the 1-based line of each key found, 0 for absent keys.
 */
static int cfg_walk(struct cfg_ctx *c, yaml_node_t *map, const struct cfg_key *keys,
                    size_t nkeys, void *obj, size_t *lines)
{
    yaml_node_pair_t *pair, *prev;
    size_t i;
    int rc;

    if (lines)
        memset(lines, 0, nkeys * sizeof(*lines));
    if (map->type != YAML_MAPPING_NODE)
        return type_err(c, map, "a map");
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(c->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(c->doc, pair->value);
        const char *name;
        char esc[80];
        size_t saved;

        if (!key || !val)
            return cfg_err(c, node_line(map), "malformed YAML document");
        if (key->type != YAML_SCALAR_NODE)
            return cfg_err(c, node_line(key), "keys must be strings, not %s",
                           kind_name(node_kind(key)));
        name = node_text(key);
        for (prev = map->data.mapping.pairs.start; prev < pair; prev++) {
            yaml_node_t *pk = yaml_document_get_node(c->doc, prev->key);
            if (pk && pk->type == YAML_SCALAR_NODE && strcmp(node_text(pk), name) == 0)
                return cfg_err(c, node_line(key), "duplicate key %s (first on line %zu)",
                               name, node_line(pk));
        }
        saved = path_push(c, "%s%s", c->path[0] ? "." : "",
                          node_show(key, esc, sizeof(esc)));
        for (i = 0; i < nkeys; i++)
            if (strcmp(keys[i].name, name) == 0)
                break;
        if (i == nkeys) {
            char known[512] = "";
            size_t len = 0, j;

            for (j = 0; j < nkeys && len < sizeof(known); j++)
                if (keys[j].set != set_refused)
                    len += (size_t)snprintf(known + len, sizeof(known) - len, "%s%s",
                                            len ? ", " : "", keys[j].name);
            return cfg_err(c, node_line(key), "unknown key (known keys here: %s)", known);
        }
        if (lines)
            lines[i] = node_line(key);
        c->key_line = node_line(key);
        c->key_val = val;
        rc = keys[i].set(c, val, obj, &keys[i]);
        if (rc < 0)
            return rc;
        path_pop(c, saved);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Setters.                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void *field(void *obj, const struct cfg_key *k)
{
    return (char *)obj + k->offset;
}

static int set_int(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    long max = k->max < 0 ? c->cfg->account_concurrency : (long)k->max;
    long v;
    int rc = get_int(c, val, (long)k->min, max, &v);

    if (rc < 0)
        return rc;
    *(int *)field(obj, k) = (int)v;
    return 0;
}

static int set_num(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    return get_num(c, val, k, (double *)field(obj, k));
}

static int set_bool(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    if (node_kind(val) != CK_BOOL)
        return type_err(c, val, "a boolean");
    *(bool *)field(obj, k) = str_in(node_text(val), cfg_true_words);
    return 0;
}

/* A string field copied as is; min/max bound its length when max > 0. */
static int set_str(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s;
    char **dst = field(obj, k);
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (k->max > 0 && (strlen(s) < (size_t)k->min || strlen(s) > (size_t)k->max))
        return cfg_err(c, node_line(val), "length %zu is out of range %g..%g", strlen(s),
                       k->min, k->max);
    *dst = strdup(s);
    return *dst ? 0 : SL_ENOMEM;
}

/* A string that is checked (length) but not kept: Description, Runtime. */
static int set_info(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (strlen(s) < (size_t)k->min || strlen(s) > (size_t)k->max)
        return cfg_err(c, node_line(val), "length %zu is out of range %g..%g", strlen(s),
                       k->min, k->max);
    return 0;
}

static int set_sub(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    return cfg_walk(c, val, k->sub, k->nsub, field(obj, k), NULL);
}

/* A key Lambda has that this build refuses: k->why says why for a redis:// source. Any other
 * source is refused as a whole anyway, so for it the key is merely not supported yet. */
static int set_refused(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    if (!c->esm_redis)
        return cfg_err(c, c->key_line, "%s is not supported by this build yet", k->name);
    return cfg_err(c, c->key_line, "%s %s", k->name, k->why);
}

static int set_listen(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s;
    bool loopback;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!valid_listen(s, &loopback))
        return cfg_err(c, node_line(val), "\"%s\" is not host:port (port 0..65535)", shown(c, val));
    return set_str(c, val, obj, k);
}

static int set_log_level(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                         const struct cfg_key *k)
{
    static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR", NULL};
    const char *s;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!str_in(s, levels))
        return cfg_err(c, node_line(val), "\"%s\" is not one of DEBUG, INFO, WARN, ERROR",
                       shown(c, val));
    return set_str(c, val, obj, k);
}

/* StateDir: any non-empty path, stored absolute; it is created later, not here. */
static int set_state_dir(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                         const struct cfg_key *k)
{
    const char *s;
    char **dst = field(obj, k);
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!*s)
        return cfg_err(c, node_line(val), "must not be empty");
    *dst = path_join(c->dir, s);
    return *dst ? 0 : SL_ENOMEM;
}

/* Functions: kept for after the top-level scalars, which the functions depend on. */
static int set_functions(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                         const struct cfg_key *k)
{
    if (val->type != YAML_SEQUENCE_NODE)
        return type_err(c, val, "a list");
    c->functions = val;
    return 0;
}

static int set_fn_name(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!valid_function_name(s))
        return cfg_err(c, node_line(val), "\"%s\" must match [A-Za-z0-9_-]{1,64}", shown(c, val));
    return set_str(c, val, obj, k);
}

/* Handler: 1..128 characters, no whitespace (Lambda's rule). */
static int set_handler(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s, *p;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    for (p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return cfg_err(c, node_line(val), "\"%s\" must not contain whitespace", shown(c, val));
    return set_str(c, val, obj, k);
}

/*
 * Command: a non-empty list of strings. Elements starting with "./" or "../", and a
 * command[0] that contains a '/', are joined onto the config folder; a bare command[0] is
 * left for the PATH lookup at spawn.
 */
static int set_command(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    struct inv_function_config *fc = obj;
    yaml_node_item_t *it;
    size_t n, i;
    int rc;

    if (val->type != YAML_SEQUENCE_NODE)
        return type_err(c, val, "a list of strings");
    n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n == 0)
        return cfg_err(c, node_line(val), "must name a program (the list is empty)");
    fc->command = calloc(n + 1, sizeof(*fc->command));
    if (!fc->command)
        return SL_ENOMEM;
    fc->command_len = n;
    for (i = 0, it = val->data.sequence.items.start; i < n; i++, it++) {
        yaml_node_t *arg = yaml_document_get_node(c->doc, *it);
        size_t saved = path_push(c, "[%zu]", i);
        const char *s;

        if (!arg)
            return cfg_err(c, node_line(val), "malformed YAML document");
        rc = get_str(c, arg, &s);
        if (rc < 0)
            return rc;
        if (i == 0 && !*s)
            return cfg_err(c, node_line(arg), "the program name must not be empty");
        if (strncmp(s, "./", 2) == 0 || strncmp(s, "../", 3) == 0 ||
            (i == 0 && s[0] != '/' && strchr(s, '/')))
            fc->command[i] = path_join(c->dir, s);
        else
            fc->command[i] = strdup(s);
        if (!fc->command[i])
            return SL_ENOMEM;
        path_pop(c, saved);
    }
    return 0;
}

/* CodeUri: a folder that must exist, stored as its realpath. */
static int set_code_uri(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    struct inv_function_config *fc = obj;
    const char *s;
    char *joined, *real, esc[PATH_MAX];
    struct stat st;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!*s)
        return cfg_err(c, node_line(val), "must not be empty");
    joined = path_join(c->dir, s);
    if (!joined)
        return SL_ENOMEM;
    real = realpath(joined, NULL);
    if (!real) {
        int e = errno;
        rc = e == ENOMEM ? SL_ENOMEM
                         : cfg_err(c, node_line(val), "%s (%s): %s", shown(c, val),
                                   sl_log_escape(joined, strlen(joined), esc, sizeof(esc)),
                                   strerror(e));
        free(joined);
        return rc;
    }
    free(joined);
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = cfg_err(c, node_line(val), "%s (%s) is not a directory", shown(c, val),
                     sl_log_escape(real, strlen(real), esc, sizeof(esc)));
        free(real);
        return rc;
    }
    fc->code_dir = real;
    return 0;
}

/* Environment.Variables: NAME: scalar, names per Lambda, reserved names refused, <= 4 KB. */
static int set_env_vars(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    struct inv_function_config *fc = obj;
    yaml_node_pair_t *pair, *prev;
    size_t n, total = 0, vline = c->key_line;

    if (val->type != YAML_MAPPING_NODE)
        return type_err(c, val, "a map of NAME: value");
    n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
    if (n == 0)
        return 0;
    fc->env = calloc(n, sizeof(*fc->env));
    if (!fc->env)
        return SL_ENOMEM;
    for (pair = val->data.mapping.pairs.start; pair < val->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(c->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pair->value);
        struct inv_env_var *ev = &fc->env[fc->env_len];
        const char *name, *value;
        char esc[80];
        size_t saved;
        enum cfg_kind vk;

        if (!key || !v)
            return cfg_err(c, node_line(val), "malformed YAML document");
        if (key->type != YAML_SCALAR_NODE)
            return cfg_err(c, node_line(key), "keys must be strings, not %s",
                           kind_name(node_kind(key)));
        name = node_text(key);
        saved = path_push(c, ".%s", node_show(key, esc, sizeof(esc)));
        for (prev = val->data.mapping.pairs.start; prev < pair; prev++) {
            yaml_node_t *pk = yaml_document_get_node(c->doc, prev->key);
            if (pk && pk->type == YAML_SCALAR_NODE && strcmp(node_text(pk), name) == 0)
                return cfg_err(c, node_line(key), "duplicate variable (first on line %zu)",
                               node_line(pk));
        }
        if (str_in(name, cfg_reserved_env))
            return cfg_err(c, node_line(key), "%s is reserved: Sluice sets it for every "
                           "instance", name);
        if (strlen(name) != key->data.scalar.length || !valid_env_name(name))
            return cfg_err(c, node_line(key), "the name must match [a-zA-Z][a-zA-Z0-9_]+");
        vk = node_kind(v);
        if (vk == CK_NULL || vk == CK_MAP || vk == CK_LIST)
            return type_err(c, v, "a string");
        value = node_text(v);
        if (strlen(value) != v->data.scalar.length)
            return cfg_err(c, node_line(v), "values must not contain NUL bytes");
        total += strlen(name) + strlen(value);
        path_pop(c, saved);
        ev->name = strdup(name);
        ev->value = strdup(value);
        fc->env_len++; /* counted before the check so clear() frees a half-made entry */
        if (!ev->name || !ev->value)
            return SL_ENOMEM;
    }
    if (total > CFG_ENV_MAX)
        return cfg_err(c, vline, "%zu bytes of names and values exceed Lambda's 4 KB "
                       "limit (%d)", total, CFG_ENV_MAX);
    return 0;
}

/* ReservedConcurrentExecutions: 0..AccountConcurrency, and the sum over all functions must
 * leave 100 unreserved (Lambda's rule) when the account has at least 100. */
static int set_reserved(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    struct inv_function_config *fc = obj;
    long account = c->cfg->account_concurrency;
    long limit = account >= CFG_UNRESERVED_MIN ? account - CFG_UNRESERVED_MIN : account;
    int rc = set_int(c, val, obj, k);

    if (rc < 0)
        return rc;
    c->reserved_sum += fc->reserved_concurrency;
    if (c->reserved_sum > limit) {
        if (account >= CFG_UNRESERVED_MIN)
            return cfg_err(c, node_line(val), "functions reserve %ld in total, leaving %ld of "
                           "AccountConcurrency %ld unreserved; at least %d must stay "
                           "unreserved", c->reserved_sum, account - c->reserved_sum, account,
                           CFG_UNRESERVED_MIN);
        return cfg_err(c, node_line(val), "functions reserve %ld in total, more than "
                       "AccountConcurrency %ld", c->reserved_sum, account);
    }
    return 0;
}

/*
 * Destination: file:///abs/path (file://./rel and file://../rel resolved against the config
 * folder), redis://host:port/stream, redis://host:port/DB/stream, or function:NAME naming a
 * function of this file.
 */
static int set_destination(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                           const struct cfg_key *k)
{
    char **dst = obj;
    const char *s;
    size_t i;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (strncmp(s, "file://", 7) == 0) {
        const char *p = s + 7;
        size_t n = strlen(p);

        if (n < 2 || p[n - 1] == '/')
            return cfg_err(c, node_line(val), "\"%s\": a file destination needs a file path, "
                           "as in file:///var/lib/sluice/failures.jsonl", shown(c, val));
        if (p[0] == '/') {
            *dst = strdup(s);
        } else if (strncmp(p, "./", 2) == 0 || strncmp(p, "../", 3) == 0) {
            char *abs = path_join(c->dir, p);
            if (!abs)
                return SL_ENOMEM;
            *dst = cfg_strf("file://%s", abs);
            free(abs);
        } else {
            return cfg_err(c, node_line(val), "\"%s\": file destinations take an absolute path "
                           "(file:///path) or one relative to the config file (file://./path)",
                           shown(c, val));
        }
        return *dst ? 0 : SL_ENOMEM;
    }
    if (strncmp(s, "redis://", 8) == 0) {
        if (!valid_redis_uri(s))
            return cfg_err(c, node_line(val), "\"%s\" is not redis://host:port/stream or "
                           "redis://host:port/DB/stream", shown(c, val));
        *dst = strdup(s);
        return *dst ? 0 : SL_ENOMEM;
    }
    if (strncmp(s, "function:", 9) == 0) {
        if (!valid_function_name(s + 9))
            return cfg_err(c, node_line(val), "\"%s\": the function name must match "
                           "[A-Za-z0-9_-]{1,64}", shown(c, val));
        for (i = 0; i < c->nfn_names; i++)
            if (c->fn_names[i] && strcmp(c->fn_names[i], s + 9) == 0)
                break;
        if (i == c->nfn_names)
            return cfg_err(c, node_line(val), "\"%s\" names no function of this file",
                           shown(c, val));
        *dst = strdup(s);
        return *dst ? 0 : SL_ENOMEM;
    }
    return cfg_err(c, node_line(val), "\"%s\" is not a supported destination (use file:///path, "
                   "redis://host:port/stream or function:NAME)", shown(c, val));
}

/* EventSourceMappings: kept for after Functions, whose names the mappings refer to. */
static int set_mappings(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    if (val->type != YAML_SEQUENCE_NODE)
        return type_err(c, val, "a list");
    c->mappings = val;
    return 0;
}

/* A mapping's FunctionName: a bare function name (not an ARN or alias) of this file. */
static int set_esm_function(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                            const struct cfg_key *k)
{
    const char *s;
    size_t i;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!valid_function_name(s))
        return cfg_err(c, node_line(val), "\"%s\" must match [A-Za-z0-9_-]{1,64}", shown(c, val));
    for (i = 0; i < c->cfg->nfunctions; i++)
        if (strcmp(c->cfg->functions[i].name, s) == 0)
            break;
    if (i == c->cfg->nfunctions)
        return cfg_err(c, node_line(val), "\"%s\" names no function of this file", shown(c, val));
    return set_str(c, val, obj, k);
}

/* EventSourceArn: a non-empty string here; pl_mapping_validate reads the URI itself. Never
 * quoted in messages: it may hold a password. */
static int set_esm_arn(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    const char *s;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    if (!*s)
        return cfg_err(c, node_line(val), "must not be empty");
    return set_str(c, val, obj, k);
}

/* MaximumBatchingWindowInSeconds: whole seconds, as Lambda takes it, into a double field. */
static int set_window(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    long v;
    int rc = get_int(c, val, (long)k->min, (long)k->max, &v);

    if (rc < 0)
        return rc;
    *(double *)field(obj, k) = (double)v;
    return 0;
}

/* FunctionResponseTypes: at most one item, ReportBatchItemFailures (Lambda's only value). */
static int set_response_types(struct cfg_ctx *c, yaml_node_t *val, void *obj,
                              const struct cfg_key *k)
{
    struct pl_mapping_config *mc = obj;
    yaml_node_item_t *it;
    size_t n, i;
    int rc;

    if (val->type != YAML_SEQUENCE_NODE)
        return type_err(c, val, "a list");
    n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    for (i = 0, it = val->data.sequence.items.start; i < n; i++, it++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        size_t saved = path_push(c, "[%zu]", i);
        const char *s;

        if (!item)
            return cfg_err(c, node_line(val), "malformed YAML document");
        if (i > 0)
            return cfg_err(c, node_line(item), "at most 1 item (Lambda's limit)");
        rc = get_str(c, item, &s);
        if (rc < 0)
            return rc;
        if (strcmp(s, "ReportBatchItemFailures") != 0)
            return cfg_err(c, node_line(item), "\"%s\" is not a response type (the only one is "
                           "ReportBatchItemFailures)", shown(c, item));
        mc->report_batch_item_failures = true;
        path_pop(c, saved);
    }
    return 0;
}

/* UUID (extension): 8-4-4-4-12 hexadecimal digits, stored in lowercase. */
static int set_uuid(struct cfg_ctx *c, yaml_node_t *val, void *obj, const struct cfg_key *k)
{
    char *dst = field(obj, k);
    const char *s;
    size_t i;
    int rc = get_str(c, val, &s);

    if (rc < 0)
        return rc;
    for (i = 0; i < 36; i++) {
        char ch = s[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                   (ch >= 'A' && ch <= 'F');
        if (dash ? ch != '-' : !hex)
            break;
    }
    if (i < 36 || s[36] != '\0')
        return cfg_err(c, node_line(val), "\"%s\" is not a UUID (36 characters: 8-4-4-4-12 "
                       "hexadecimal digits)", shown(c, val));
    for (i = 0; i < 36; i++)
        dst[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    dst[36] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Key tables.                                                                              */
/* ---------------------------------------------------------------------------------------- */

#define FC_OFF(f) offsetof(struct inv_function_config, f)
#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

static const struct cfg_key destination_keys[] = {
    {.name = "Destination", .set = set_destination},
};

static const struct cfg_key destination_config_keys[] = {
    {.name = "OnSuccess", .set = set_sub, .offset = FC_OFF(eic.on_success),
     .sub = destination_keys, .nsub = NKEYS(destination_keys)},
    {.name = "OnFailure", .set = set_sub, .offset = FC_OFF(eic.on_failure),
     .sub = destination_keys, .nsub = NKEYS(destination_keys)},
};

static const struct cfg_key event_invoke_keys[] = {
    {.name = "MaximumRetryAttempts", .set = set_int, .offset = FC_OFF(eic.max_retry_attempts),
     .min = 0, .max = 2},
    {.name = "MaximumEventAgeInSeconds", .set = set_int, .offset = FC_OFF(eic.max_event_age_s),
     .min = 60, .max = 21600},
    {.name = "RetryBaseDelaySeconds", .set = set_num, .offset = FC_OFF(eic.retry_base_delay_s),
     .min = 0, .max = 3600, .min_open = true},
    {.name = "DestinationConfig", .set = set_sub, .sub = destination_config_keys,
     .nsub = NKEYS(destination_config_keys)},
};

static const struct cfg_key environment_keys[] = {
    {.name = "Variables", .set = set_env_vars},
};

/* Indexes of the keys load_function checks after the walk (required, or cross-field). */
enum { FK_NAME = 0, FK_COMMAND = 3, FK_RESERVED = 9, FK_PROVISIONED = 11 };

/* The order is the one "known keys here" lists: Lambda's keys first, then the extensions. */
static const struct cfg_key function_keys[] = {
    [FK_NAME] = {.name = "FunctionName", .set = set_fn_name, .offset = FC_OFF(name)},
    {.name = "Description", .set = set_info, .min = 0, .max = 256},
    {.name = "Runtime", .set = set_info, .min = 1, .max = 128},
    [FK_COMMAND] = {.name = "Command", .set = set_command},
    {.name = "Handler", .set = set_handler, .offset = FC_OFF(handler), .min = 1, .max = 128},
    {.name = "CodeUri", .set = set_code_uri},
    {.name = "Timeout", .set = set_int, .offset = FC_OFF(timeout_s), .min = 1, .max = 900},
    {.name = "MemorySize", .set = set_int, .offset = FC_OFF(memory_mb), .min = 128,
     .max = 10240},
    {.name = "Environment", .set = set_sub, .sub = environment_keys,
     .nsub = NKEYS(environment_keys)},
    [FK_RESERVED] = {.name = "ReservedConcurrentExecutions", .set = set_reserved,
                     .offset = FC_OFF(reserved_concurrency), .min = 0, .max = -1},
    {.name = "EventInvokeConfig", .set = set_sub, .sub = event_invoke_keys,
     .nsub = NKEYS(event_invoke_keys)},
    [FK_PROVISIONED] = {.name = "ProvisionedConcurrency", .set = set_int,
                        .offset = FC_OFF(provisioned), .min = 0, .max = -1},
    {.name = "InstanceIdleTimeoutSeconds", .set = set_num, .offset = FC_OFF(idle_timeout_s),
     .min = 1, .max = 86400},
};

#define MC_OFF(f) offsetof(struct pl_mapping_config, f)

static const struct cfg_key scaling_keys[] = {
    {.name = "MaximumConcurrency", .set = set_int, .offset = MC_OFF(max_concurrency), .min = 2,
     .max = 1000},
};

/* A Lambda mapping key this build refuses (never a "known key" in messages), with why. */
#define REFUSED(key, reason) {.name = (key), .set = set_refused, .why = (reason)}
#define WHY_QUEUE                                                                            \
    "does not apply to redis:// sources (queue semantics: a failed message is received "     \
    "again after VisibilityTimeout and moved to deadLetterTarget after maxReceiveCount "     \
    "receives: the queue's redrive policy, set in the EventSourceArn query)"
#define WHY_STREAM                                                                           \
    "does not apply to redis:// sources (it is for ordered stream sources such as Kafka "    \
    "and Postgres; a mapping on a Redis stream is a queue consumer)"
#define WHY_KAFKA "is for Kafka sources, which this build does not support yet"
#define WHY_OTHER "is not supported by this build yet"

/* Indexes of the keys load_mapping checks after the walk. */
enum { MK_NAME = 0, MK_ARN = 1, MK_UUID = 7 };

static const struct cfg_key mapping_keys[] = {
    [MK_NAME] = {.name = "FunctionName", .set = set_esm_function, .offset = MC_OFF(function_name)},
    [MK_ARN] = {.name = "EventSourceArn", .set = set_esm_arn, .offset = MC_OFF(event_source_arn)},
    {.name = "BatchSize", .set = set_int, .offset = MC_OFF(batch_size), .min = 1, .max = 10000},
    {.name = "MaximumBatchingWindowInSeconds", .set = set_window, .offset = MC_OFF(window_s),
     .min = 0, .max = 300},
    {.name = "Enabled", .set = set_bool, .offset = MC_OFF(enabled)},
    {.name = "FunctionResponseTypes", .set = set_response_types},
    {.name = "ScalingConfig", .set = set_sub, .sub = scaling_keys, .nsub = NKEYS(scaling_keys)},
    [MK_UUID] = {.name = "UUID", .set = set_uuid, .offset = MC_OFF(uuid)},
    REFUSED("BisectBatchOnFunctionError", WHY_QUEUE),
    REFUSED("MaximumRetryAttempts", WHY_QUEUE),
    REFUSED("MaximumRecordAgeInSeconds", WHY_QUEUE),
    REFUSED("DestinationConfig", WHY_QUEUE),
    REFUSED("StartingPosition", WHY_STREAM),
    REFUSED("StartingPositionTimestamp", WHY_STREAM),
    REFUSED("ParallelizationFactor", WHY_STREAM),
    REFUSED("TumblingWindowInSeconds", WHY_STREAM),
    REFUSED("Topics", WHY_KAFKA),
    REFUSED("SelfManagedEventSource", WHY_KAFKA),
    REFUSED("SelfManagedKafkaEventSourceConfig", WHY_KAFKA),
    REFUSED("AmazonManagedKafkaEventSourceConfig", WHY_KAFKA),
    REFUSED("SourceAccessConfigurations", WHY_KAFKA),
    REFUSED("Queues", WHY_OTHER),
    REFUSED("DocumentDBEventSourceConfig", WHY_OTHER),
    REFUSED("FilterCriteria", WHY_OTHER),
    REFUSED("KMSKeyArn", WHY_OTHER),
    REFUSED("ProvisionedPollerConfig", WHY_OTHER),
    REFUSED("MetricsConfig", WHY_OTHER),
    REFUSED("LoggingConfig", WHY_OTHER),
    REFUSED("Tags", WHY_OTHER),
};

#define CFG_OFF(f) offsetof(struct br_config, f)

enum { TK_LISTEN };

static const struct cfg_key top_keys[] = {
    [TK_LISTEN] = {.name = "Listen", .set = set_listen, .offset = CFG_OFF(listen)},
    {.name = "StateDir", .set = set_state_dir, .offset = CFG_OFF(state_dir)},
    {.name = "AccountConcurrency", .set = set_int, .offset = CFG_OFF(account_concurrency),
     .min = 1, .max = 100000},
    {.name = "AllowNonLoopbackListen", .set = set_bool, .offset = CFG_OFF(allow_remote)},
    {.name = "LogLevel", .set = set_log_level, .offset = CFG_OFF(log_level)},
    {.name = "Functions", .set = set_functions},
    {.name = "EventSourceMappings", .set = set_mappings},
};

_Static_assert(NKEYS(function_keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");
_Static_assert(NKEYS(function_keys) == FK_PROVISIONED + 2, "FK_* indexes out of step");
_Static_assert(NKEYS(top_keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");
_Static_assert(NKEYS(mapping_keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

/* ---------------------------------------------------------------------------------------- */
/* Functions.                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Borrowed FunctionName text of a list item, or NULL: lets function:X see later functions. */
static const char *peek_function_name(struct cfg_ctx *c, yaml_node_t *item)
{
    yaml_node_pair_t *pair;

    if (!item || item->type != YAML_MAPPING_NODE)
        return NULL;
    for (pair = item->data.mapping.pairs.start; pair < item->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(c->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(c->doc, pair->value);
        if (key && val && key->type == YAML_SCALAR_NODE && val->type == YAML_SCALAR_NODE &&
            strcmp(node_text(key), "FunctionName") == 0)
            return node_text(val);
    }
    return NULL;
}

static int load_function(struct cfg_ctx *c, size_t idx, yaml_node_t *item,
                         struct inv_function_config *fc)
{
    size_t lines[CFG_MAX_KEYS];
    size_t saved = path_push(c, "Functions[%zu]", idx);
    size_t i;
    int rc;

    inv_function_config_defaults(fc);
    rc = cfg_walk(c, item, function_keys, NKEYS(function_keys), fc, lines);
    if (rc < 0)
        return rc;
    if (!lines[FK_NAME])
        return cfg_err(c, node_line(item), "missing required key FunctionName");
    if (!lines[FK_COMMAND])
        return cfg_err(c, node_line(item), "missing required key Command");
    if (lines[FK_PROVISIONED]) {
        int max = fc->reserved_concurrency >= 0 ? fc->reserved_concurrency
                                                : c->cfg->account_concurrency;
        if (fc->provisioned > max) {
            path_push(c, ".ProvisionedConcurrency");
            return cfg_err(c, lines[FK_PROVISIONED], "%d is out of range 0..%d (%s)",
                           fc->provisioned, max,
                           fc->reserved_concurrency >= 0 ? "ReservedConcurrentExecutions"
                                                         : "AccountConcurrency");
        }
    }
    for (i = 0; i < idx; i++) {
        if (strcmp(c->cfg->functions[i].name, fc->name) == 0) {
            path_push(c, ".FunctionName");
            return cfg_err(c, lines[FK_NAME], "duplicate function name %s (Functions[%zu])",
                           fc->name, i);
        }
    }
    if (!fc->handler && !(fc->handler = strdup(CFG_DEFAULT_HANDLER)))
        return SL_ENOMEM;
    if (!fc->code_dir && !(fc->code_dir = strdup(c->dir)))
        return SL_ENOMEM;
    path_pop(c, saved);
    return 0;
}

static int load_functions(struct cfg_ctx *c)
{
    yaml_node_t *list = c->functions;
    size_t n, i;
    int rc;

    if (!list)
        return 0;
    n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0)
        return 0;
    c->fn_names = calloc(n, sizeof(*c->fn_names));
    c->cfg->functions = calloc(n, sizeof(*c->cfg->functions));
    if (!c->fn_names || !c->cfg->functions)
        return SL_ENOMEM;
    c->nfn_names = n;
    for (i = 0; i < n; i++)
        c->fn_names[i] = peek_function_name(
            c, yaml_document_get_node(c->doc, list->data.sequence.items.start[i]));
    for (i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, list->data.sequence.items.start[i]);
        if (!item)
            return cfg_err(c, node_line(list), "malformed YAML document");
        /* counted first: br_config_free clears the half-built entry on failure */
        c->cfg->nfunctions = i + 1;
        rc = load_function(c, i, item, &c->cfg->functions[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Event source mappings.                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Whether a mapping item's EventSourceArn is absent, not a string, or a redis:// URI: the
 * refused keys explain themselves for that source. */
static bool peek_redis_source(struct cfg_ctx *c, yaml_node_t *item)
{
    yaml_node_pair_t *pair;

    if (!item || item->type != YAML_MAPPING_NODE)
        return true;
    for (pair = item->data.mapping.pairs.start; pair < item->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(c->doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(c->doc, pair->value);
        if (key && val && key->type == YAML_SCALAR_NODE && val->type == YAML_SCALAR_NODE &&
            strcmp(node_text(key), "EventSourceArn") == 0)
            return strncmp(node_text(val), "redis://", 8) == 0;
    }
    return true;
}

/*
 * Turns pl_mapping_validate's "Field: reason" (Field may be "ScalingConfig.MaximumConcurrency")
 * into an error at that field's line; a sentence that names no key of the item is reported at
 * the EventSourceArn line.
 */
static int mapping_invalid(struct cfg_ctx *c, const size_t *lines, const char *why)
{
    const char *colon = strstr(why, ": ");
    size_t top, i;

    if (colon && (size_t)(colon - why) == strspn(why, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                      "abcdefghijklmnopqrstuvwxyz.")) {
        top = strcspn(why, ".:");
        for (i = 0; i < NKEYS(mapping_keys); i++) {
            if (strlen(mapping_keys[i].name) == top &&
                strncmp(mapping_keys[i].name, why, top) == 0 && lines[i]) {
                path_push(c, ".%.*s", (int)(colon - why), why);
                return cfg_err(c, lines[i], "%s", colon + 2);
            }
        }
    }
    return cfg_err(c, lines[MK_ARN], "%s", why);
}

static int load_mapping(struct cfg_ctx *c, size_t idx, yaml_node_t *item,
                        struct pl_mapping_config *mc)
{
    size_t lines[CFG_MAX_KEYS];
    size_t saved = path_push(c, "EventSourceMappings[%zu]", idx);
    char why[CFG_ERR_MAX];
    size_t i;
    int rc;

    pl_mapping_config_defaults(mc);
    c->esm_redis = peek_redis_source(c, item);
    rc = cfg_walk(c, item, mapping_keys, NKEYS(mapping_keys), mc, lines);
    if (rc < 0)
        return rc;
    if (!lines[MK_NAME])
        return cfg_err(c, node_line(item), "missing required key FunctionName");
    if (!lines[MK_ARN])
        return cfg_err(c, node_line(item), "missing required key EventSourceArn");
    if (pl_mapping_validate(mc, why, sizeof(why)) < 0)
        return mapping_invalid(c, lines, why);
    if (!mc->uuid[0]) {
        pl_mapping_derive_uuid(mc->function_name, mc->event_source_arn, mc->uuid);
        if (!mc->uuid[0])
            return SL_ENOMEM;
    }
    for (i = 0; i < idx; i++) {
        const struct pl_mapping_config *prev = &c->cfg->mappings[i];

        if (strcmp(prev->function_name, mc->function_name) == 0 &&
            strcmp(prev->event_source_arn, mc->event_source_arn) == 0) {
            path_push(c, ".EventSourceArn");
            return cfg_err(c, lines[MK_ARN], "function %s already has a mapping of this source "
                           "(EventSourceMappings[%zu])", mc->function_name, i);
        }
        if (strcmp(prev->uuid, mc->uuid) == 0) {
            path_push(c, lines[MK_UUID] ? ".UUID" : ".EventSourceArn");
            return cfg_err(c, lines[MK_UUID] ? lines[MK_UUID] : lines[MK_ARN],
                           "duplicate UUID %s (EventSourceMappings[%zu])", mc->uuid, i);
        }
    }
    path_pop(c, saved);
    return 0;
}

static int load_mappings(struct cfg_ctx *c)
{
    yaml_node_t *list = c->mappings;
    size_t n, i;
    int rc;

    if (!list)
        return 0;
    n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0)
        return 0;
    c->cfg->mappings = calloc(n, sizeof(*c->cfg->mappings));
    if (!c->cfg->mappings)
        return SL_ENOMEM;
    for (i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, list->data.sequence.items.start[i]);
        if (!item)
            return cfg_err(c, node_line(list), "malformed YAML document");
        /* counted first: br_config_free clears the half-built entry on failure */
        c->cfg->nmappings = i + 1;
        rc = load_mapping(c, i, item, &c->cfg->mappings[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The document.                                                                            */
/* ---------------------------------------------------------------------------------------- */

static size_t offset_line(const uint8_t *buf, size_t len, size_t off)
{
    size_t line = 1, i;

    for (i = 0; i < off && i < len; i++)
        if (buf[i] == '\n')
            line++;
    return line;
}

static int yaml_fail(struct cfg_ctx *c, yaml_parser_t *p, const uint8_t *buf, size_t len)
{
    size_t line;

    if (p->error == YAML_MEMORY_ERROR)
        return SL_ENOMEM;
    line = p->error == YAML_READER_ERROR ? offset_line(buf, len, p->problem_offset)
                                         : p->problem_mark.line + 1;
    if (p->context)
        return cfg_err(c, line, "YAML syntax error: %s (%s that starts on line %zu)",
                       p->problem ? p->problem : "error", p->context,
                       p->context_mark.line + 1);
    return cfg_err(c, line, "YAML syntax error: %s", p->problem ? p->problem : "error");
}

/* Walks a loaded document into c->cfg. */
static int load_document(struct cfg_ctx *c, yaml_node_t *root)
{
    struct br_config *cfg = c->cfg;
    size_t lines[CFG_MAX_KEYS];
    bool loopback = true;
    int rc;

    if (!root)
        return cfg_err(c, 1, "the file is empty (expected a map with Functions)");
    rc = cfg_walk(c, root, top_keys, NKEYS(top_keys), cfg, lines);
    if (rc < 0)
        return rc;
    if (!cfg->listen && !(cfg->listen = strdup(CFG_DEFAULT_LISTEN)))
        return SL_ENOMEM;
    valid_listen(cfg->listen, &loopback);
    if (!loopback && !cfg->allow_remote) {
        path_push(c, "Listen");
        return cfg_err(c, lines[TK_LISTEN], "%s is not a loopback address; set "
                       "AllowNonLoopbackListen: true to serve the API beyond this host "
                       "(it has no authentication)", cfg->listen);
    }
    if (!cfg->state_dir && !(cfg->state_dir = path_join(c->dir, ".sluice")))
        return SL_ENOMEM;
    if (!cfg->log_level && !(cfg->log_level = strdup(CFG_DEFAULT_LOG_LEVEL)))
        return SL_ENOMEM;
    rc = load_functions(c);
    if (rc < 0)
        return rc;
    return load_mappings(c);
}

/* Parses buf[0..len) into c->cfg (whose file/dir are set). Does no I/O but the CodeUri
 * existence check (realpath, stat). */
static int parse_buffer(struct cfg_ctx *c, const uint8_t *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rc;

    if (!yaml_parser_initialize(&parser))
        return SL_ENOMEM;
    yaml_parser_set_input_string(&parser, buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(c, &parser, buf, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    c->doc = &doc;
    rc = load_document(c, yaml_document_get_root_node(&doc));
    c->doc = NULL;
    if (rc == 0 && yaml_document_get_root_node(&doc)) {
        /* a second document would be silently ignored: refuse it */
        if (!yaml_parser_load(&parser, &extra)) {
            rc = yaml_fail(c, &parser, buf, len);
        } else {
            if (yaml_document_get_root_node(&extra))
                rc = cfg_err(c, extra.start_mark.line + 1,
                             "only one YAML document is allowed per file");
            yaml_document_delete(&extra);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* Reads the whole file (at most CFG_FILE_MAX) into a malloc'd buffer. */
static int read_file(struct cfg_ctx *c, const char *path, uint8_t **out, size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    int rc;

    if (!f)
        return errno == ENOMEM ? SL_ENOMEM : cfg_err(c, 0, "cannot open: %s", strerror(errno));
    for (;;) {
        if (len == cap) {
            uint8_t *nb;
            if (cap >= CFG_FILE_MAX) {
                rc = cfg_err(c, 0, "larger than %u bytes: not a configuration file",
                             CFG_FILE_MAX);
                goto fail;
            }
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = SL_ENOMEM;
                goto fail;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = cfg_err(c, 0, "cannot read: %s", strerror(errno));
        goto fail;
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;

fail:
    free(buf);
    fclose(f);
    return rc;
}

/* Turns a failed parse's rc and c->err into the caller's (rc, *errmsg). */
static int cfg_fail(struct cfg_ctx *c, int rc, char **errmsg)
{
    if (rc == SL_ECONFIG && c->err) {
        *errmsg = c->err;
    } else {
        free(c->err);
        rc = rc == SL_ECONFIG ? SL_ENOMEM : rc;
    }
    c->err = NULL;
    return rc;
}

/*
 * The decoder behind br_config_load (broker_internal.h): parses and validates the YAML text
 * data[0..len) (not NUL-terminated; at most CFG_FILE_MAX bytes) into *out. name_for_errors
 * prefixes every message and is copied to (*out)->path; base_dir (absolute and symlink-free,
 * copied to (*out)->dir) is what relative paths resolve against. Reads no file: its only
 * system calls are realpath() and stat() on CodeUri, which must name an existing folder (one
 * that does not exist is an ordinary SL_ECONFIG). Returns 0, SL_ECONFIG with a malloc'd
 * message in *errmsg, SL_EINVAL for a NULL argument or a relative base_dir, or SL_ENOMEM;
 * on failure *out is NULL and nothing is left allocated.
 */
int br_config_parse_buffer(const uint8_t *data, size_t len, const char *name_for_errors,
                           const char *base_dir, struct br_config **out, char **errmsg)
{
    struct cfg_ctx c;
    struct br_config *cfg;
    int rc;

    if (!out || !errmsg)
        return SL_EINVAL;
    *out = NULL;
    *errmsg = NULL;
    if ((!data && len > 0) || !name_for_errors || !base_dir || base_dir[0] != '/')
        return SL_EINVAL;
    memset(&c, 0, sizeof(c));
    c.file = name_for_errors;
    if (len > CFG_FILE_MAX)
        return cfg_fail(&c, cfg_err(&c, 0, "larger than %u bytes: not a configuration file",
                                    CFG_FILE_MAX), errmsg);

    cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return SL_ENOMEM;
    cfg->account_concurrency = CFG_DEFAULT_ACCOUNT_CONCURRENCY;
    c.cfg = cfg;
    cfg->path = strdup(name_for_errors);
    cfg->dir = strdup(base_dir);
    if (!cfg->path || !cfg->dir) {
        rc = SL_ENOMEM;
        goto fail;
    }
    c.dir = cfg->dir;
    rc = parse_buffer(&c, data ? data : (const uint8_t *)"", len);
    if (rc < 0)
        goto fail;
    free(c.fn_names);
    *out = cfg;
    return 0;

fail:
    free(c.fn_names);
    br_config_free(cfg);
    return cfg_fail(&c, rc, errmsg);
}

/*
 * Parses and validates the YAML file at path into *out (free with br_config_free). Returns 0;
 * SL_ECONFIG with a malloc'd "FILE:LINE: Key.Path: reason" in *errmsg (the caller frees it;
 * FILE is path as given, LINE is left out for errors about the whole file); or SL_ENOMEM with
 * *errmsg NULL. On failure *out is NULL and nothing is left allocated.
 */
int br_config_load(const char *path, struct br_config **out, char **errmsg)
{
    struct cfg_ctx c;
    char *real, *dir = NULL, *slash;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    *errmsg = NULL;
    memset(&c, 0, sizeof(c));
    c.file = path;

    real = realpath(path, NULL);
    if (!real) {
        rc = errno == ENOMEM ? SL_ENOMEM : cfg_err(&c, 0, "cannot open: %s", strerror(errno));
        return cfg_fail(&c, rc, errmsg);
    }
    dir = strdup(real);
    if (!dir) {
        free(real);
        return SL_ENOMEM;
    }
    slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0'; /* realpath is absolute: there is a slash */

    rc = read_file(&c, real, &buf, &len);
    if (rc < 0) {
        rc = cfg_fail(&c, rc, errmsg);
    } else {
        rc = br_config_parse_buffer(buf, len, path, dir, out, errmsg);
        if (rc == 0) { /* (*out)->path is the absolute path, not the one given */
            free((*out)->path);
            (*out)->path = real;
            real = NULL;
        }
    }
    free(buf);
    free(dir);
    free(real);
    return rc;
}

/* Frees cfg and everything it owns. NULL is a no-op. */
void br_config_free(struct br_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    for (i = 0; i < cfg->nfunctions; i++)
        inv_function_config_clear(&cfg->functions[i]);
    free(cfg->functions);
    for (i = 0; i < cfg->nmappings; i++)
        pl_mapping_config_clear(&cfg->mappings[i]);
    free(cfg->mappings);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->listen);
    free(cfg->state_dir);
    free(cfg->log_level);
    free(cfg);
}

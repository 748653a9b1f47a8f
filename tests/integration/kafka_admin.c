/*
 * kafka_admin - the integration tests' Kafka client (librdkafka), built into <build>/tests/.
 * tests/integration/kafka_server.py wraps it; one process per call, no JVM.
 *
 *   kafka_admin -b HOST:PORT [-t SECONDS] COMMAND ...
 *
 *   create-topic NAME PARTITIONS [-r RF] [-c KEY=VALUE]...
 *       CreateTopics, then waits until the metadata shows every partition with a leader, so a
 *       produce right after succeeds. Prints {"topic":..,"partitions":N}.
 *   delete-topic NAME
 *   describe NAME        {"topic":..,"partitions":[{"partition":0,"leader":1},..]}
 *   produce TOPIC -n N [-p PARTITION] [-s SIZE] [-k KEYPREFIX] [-v VALUEPREFIX]
 *       N generated records: key KEYPREFIX<i> (no key with -k ''), value VALUEPREFIX<i> padded
 *       with 'x' to SIZE bytes; partition -p, else librdkafka's key-hash partitioner.
 *       Prints {"delivered":N,"partitions":{"0":n0,..}}.
 *   produce TOPIC --json
 *       One record per stdin line: {"key":s|null,"value":s|null,"partition":p,
 *       "headers":[[k,v],..],"timestamp":ms} (all optional). Strings carry bytes: each char is
 *       one byte (U+0000..U+00FF, "latin-1"), so any byte string round-trips. Prints one
 *       {"partition":p,"offset":o} per record, in input order.
 *   consume TOPIC [-n COUNT] [-p PARTITION] [--from OFFSET] [--count-only]
 *       Reads without a consumer group from OFFSET (default the beginning) of every partition
 *       (or of -p) until COUNT records arrived, or, without -n, up to the end each partition
 *       had when the command started. One JSON line per record:
 *       {"partition","offset","timestamp","key","value","headers":[[k,v],..]}, strings as above;
 *       --count-only prints {"count":N} instead. Exit 3 when -t passes first (what arrived
 *       is printed).
 *   offsets TOPIC        {"0":[low,high],..}: each partition's watermarks
 *   committed GROUP TOPIC
 *       {"0":offset,..}: the group's committed offsets (-1 where none), read without joining
 *       the group.
 *   commit GROUP TOPIC PARTITION=OFFSET...
 *       Commits those offsets for the group without joining it (the group must have no active
 *       members), e.g. to set where a consumer group starts.
 *
 * -t: the deadline of the whole command (default 30 s). Exit 0 ok, 1 failure (the reason on
 * stderr), 2 usage, 3 deadline.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

static const char *g_bootstrap;
static double g_deadline;      /* CLOCK_MONOTONIC seconds */
static double g_timeout = 30.0;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int remaining_ms(void) {
  double r = g_deadline - now_s();
  return r <= 0 ? 0 : (int)(r * 1000.0) + 1;
}

_Noreturn static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kafka_admin: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  /* What was printed so far still goes out; then no atexit handlers (librdkafka's threads may
   * still run): the exit code and the reason on stderr are the result. */
  fflush(stdout);
  _exit(code);
}

_Noreturn static void usage(void) {
  fputs("usage: kafka_admin -b HOST:PORT [-t SECONDS] create-topic|delete-topic|describe|"
        "produce|consume|offsets|committed|commit ... (see the comment at the top of kafka_admin.c)\n",
        stderr);
  exit(2);
}

/* ---- JSON strings as bytes ----------------------------------------------------------------- */

static void put_bytes(const void *data, size_t len) {
  if (data == NULL) {
    fputs("null", stdout);
    return;
  }
  const unsigned char *p = data;
  putchar('"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      putchar('\\');
      putchar(c);
    } else if (c >= 0x20 && c < 0x7f) {
      putchar(c);
    } else {
      printf("\\u%04x", c);
    }
  }
  putchar('"');
}

/* A jansson string (UTF-8) whose code points are all <= U+00FF becomes those bytes. */
static char *latin1_bytes(json_t *s, size_t *out_len, const char *what) {
  const unsigned char *u = (const unsigned char *)json_string_value(s);
  size_t n = json_string_length(s);
  char *out = malloc(n + 1);
  if (out == NULL)
    die(1, "out of memory");
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (u[i] < 0x80) {
      out[o++] = (char)u[i];
    } else if ((u[i] & 0xe0) == 0xc0 && i + 1 < n && u[i] <= 0xc3) {
      out[o++] = (char)(((u[i] & 0x1f) << 6) | (u[i + 1] & 0x3f));
      i++;
    } else {
      die(1, "%s: a character above U+00FF; strings carry bytes, one per character", what);
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* ---- clients --------------------------------------------------------------------------------- */

static rd_kafka_conf_t *base_conf(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", g_bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "client.id", "sluice-kafka-admin", err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK)
    die(1, "config: %s", err);
  return conf;
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
  char err[512];
  if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
    die(1, "config %s=%s: %s", k, v, err);
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf) {
  char err[512];
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == NULL)
    die(1, "rd_kafka_new: %s", err);
  return rk;
}

static void destroy_client(rd_kafka_t *rk) {
  rd_kafka_destroy(rk);
  rd_kafka_wait_destroyed(5000);
}

/* The topic's metadata; NULL (with *err set) when it is not (yet) complete. */
static const rd_kafka_metadata_t *topic_metadata(rd_kafka_t *rk, const char *name, int timeout_ms,
                                                 rd_kafka_resp_err_t *err) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
  *err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (*err)
    return NULL;
  if (md->topic_cnt != 1 || md->topics[0].err) {
    *err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    rd_kafka_metadata_destroy(md);
    return NULL;
  }
  return md;
}

/* Waits for the topic to exist with `partitions` partitions (0: any), each with a leader. */
static const rd_kafka_metadata_t *wait_topic(rd_kafka_t *rk, const char *name, int partitions) {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  const char *why = "no answer";
  for (;;) {
    int left = remaining_ms();
    if (left <= 0)
      die(3, "topic %s: not ready within %.1f s (%s: %s)", name, g_timeout, why, rd_kafka_err2str(err));
    const rd_kafka_metadata_t *md = topic_metadata(rk, name, left < 2000 ? left : 2000, &err);
    if (md != NULL) {
      const rd_kafka_metadata_topic_t *t = &md->topics[0];
      bool ok = t->partition_cnt > 0 && (partitions == 0 || t->partition_cnt == partitions);
      for (int i = 0; ok && i < t->partition_cnt; i++)
        ok = t->partitions[i].err == 0 && t->partitions[i].leader >= 0;
      if (ok)
        return md;
      why = "partitions without leaders";
      rd_kafka_metadata_destroy(md);
    } else {
      why = "metadata";
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* ---- admin ----------------------------------------------------------------------------------- */

static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type) {
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, remaining_ms());
  if (ev == NULL)
    die(3, "no admin result within %.1f s", g_timeout);
  if (rd_kafka_event_type(ev) != type)
    die(1, "admin request failed: %s", rd_kafka_event_error_string(ev));
  return ev;
}

static int cmd_create_topic(int argc, char **argv) {
  if (argc < 3)
    usage();
  const char *name = argv[1];
  int partitions = atoi(argv[2]), rf = 1;
  if (partitions <= 0)
    die(2, "PARTITIONS must be a positive number, not %s", argv[2]);
  char err[512];
  rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, base_conf());
  rd_kafka_NewTopic_t *nt = NULL;
  /* -r must come before the configs are applied: parse twice. */
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
      rf = atoi(argv[++i]);
    else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
      i++;
    else
      usage();
  }
  nt = rd_kafka_NewTopic_new(name, partitions, rf, err, sizeof err);
  if (nt == NULL)
    die(1, "NewTopic: %s", err);
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0) {
      char *kv = argv[++i], *eq = strchr(kv, '=');
      if (eq == NULL)
        die(2, "-c wants KEY=VALUE, not %s", kv);
      *eq = '\0';
      if (rd_kafka_NewTopic_set_config(nt, kv, eq + 1))
        die(1, "topic config %s", kv);
    } else if (strcmp(argv[i], "-r") == 0) {
      i++;
    }
  }
  rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  int t = remaining_ms();
  if (rd_kafka_AdminOptions_set_request_timeout(opt, t, err, sizeof err) ||
      rd_kafka_AdminOptions_set_operation_timeout(opt, t > 1000 ? t - 500 : t, err, sizeof err))
    die(1, "admin options: %s", err);
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
  rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT);
  size_t cnt = 0;
  const rd_kafka_topic_result_t **res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
  if (cnt != 1)
    die(1, "CreateTopics: %zu results for one topic", cnt);
  if (rd_kafka_topic_result_error(res[0]))
    die(1, "CreateTopics %s: %s: %s", name, rd_kafka_err2name(rd_kafka_topic_result_error(res[0])),
        rd_kafka_topic_result_error_string(res[0]) ? rd_kafka_topic_result_error_string(res[0]) : "");
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_AdminOptions_destroy(opt);
  rd_kafka_NewTopic_destroy(nt);
  const rd_kafka_metadata_t *md = wait_topic(rk, name, partitions);
  rd_kafka_metadata_destroy(md);
  printf("{\"topic\":");
  put_bytes(name, strlen(name));
  printf(",\"partitions\":%d}\n", partitions);
  destroy_client(rk);
  return 0;
}

static int cmd_delete_topic(int argc, char **argv) {
  if (argc != 2)
    usage();
  char err[512];
  rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, base_conf());
  rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(argv[1]);
  rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  int t = remaining_ms();
  if (rd_kafka_AdminOptions_set_request_timeout(opt, t, err, sizeof err) ||
      rd_kafka_AdminOptions_set_operation_timeout(opt, t > 1000 ? t - 500 : t, err, sizeof err))
    die(1, "admin options: %s", err);
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopics(rk, &dt, 1, opt, q);
  rd_kafka_event_t *ev = admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT);
  size_t cnt = 0;
  const rd_kafka_topic_result_t **res =
      rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
  if (cnt != 1 || rd_kafka_topic_result_error(res[0]))
    die(1, "DeleteTopics %s: %s", argv[1],
        cnt == 1 ? rd_kafka_err2name(rd_kafka_topic_result_error(res[0])) : "no result");
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_AdminOptions_destroy(opt);
  rd_kafka_DeleteTopic_destroy(dt);
  destroy_client(rk);
  return 0;
}

static int cmd_describe(int argc, char **argv) {
  if (argc != 2)
    usage();
  rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, base_conf());
  const rd_kafka_metadata_t *md = wait_topic(rk, argv[1], 0);
  const rd_kafka_metadata_topic_t *t = &md->topics[0];
  printf("{\"topic\":");
  put_bytes(t->topic, strlen(t->topic));
  printf(",\"partitions\":[");
  for (int i = 0; i < t->partition_cnt; i++)
    printf("%s{\"partition\":%" PRId32 ",\"leader\":%" PRId32 "}", i ? "," : "",
           t->partitions[i].id, t->partitions[i].leader);
  printf("]}\n");
  rd_kafka_metadata_destroy(md);
  destroy_client(rk);
  return 0;
}

/* ---- produce --------------------------------------------------------------------------------- */

struct delivery {
  int32_t partition;
  int64_t offset;
  rd_kafka_resp_err_t err;
  bool done;
};

static struct delivery *g_dr;
static size_t g_dr_done, g_dr_failed;
static rd_kafka_resp_err_t g_dr_first_err;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  struct delivery *d = m->_private;
  d->partition = m->partition;
  d->offset = m->offset;
  d->err = m->err;
  d->done = true;
  g_dr_done++;
  if (m->err) {
    if (g_dr_failed++ == 0)
      g_dr_first_err = m->err;
  }
}

static void produce_one(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                        size_t klen, const void *val, size_t vlen, rd_kafka_headers_t *hdrs,
                        int64_t ts, struct delivery *d) {
  for (;;) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
        RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_TIMESTAMP(ts),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      return;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      die(1, "produce to %s: %s", topic, rd_kafka_err2str(err));
    if (remaining_ms() <= 0)
      die(3, "produce to %s: queue still full after %.1f s", topic, g_timeout);
    rd_kafka_poll(rk, 50);
  }
}

static rd_kafka_t *new_producer(void) {
  rd_kafka_conf_t *conf = base_conf();
  conf_set(conf, "acks", "all");
  conf_set(conf, "linger.ms", "5");
  conf_set(conf, "queue.buffering.max.messages", "1000000");
  conf_set(conf, "queue.buffering.max.kbytes", "1048576");
  char buf[32];
  snprintf(buf, sizeof buf, "%d", (int)(g_timeout * 1000));
  conf_set(conf, "message.timeout.ms", buf);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  return new_client(RD_KAFKA_PRODUCER, conf);
}

static void flush_all(rd_kafka_t *rk, size_t n) {
  while (g_dr_done < n) {
    if (remaining_ms() <= 0)
      die(3, "only %zu of %zu records delivered within %.1f s", g_dr_done, n, g_timeout);
    rd_kafka_flush(rk, 100);
    rd_kafka_poll(rk, 0);
  }
  if (g_dr_failed)
    die(1, "%zu of %zu records failed; first error: %s", g_dr_failed, n, rd_kafka_err2str(g_dr_first_err));
}

static int produce_generated(const char *topic, long n, int32_t partition, long size,
                             const char *kprefix, const char *vprefix) {
  rd_kafka_t *rk = new_producer();
  g_dr = calloc((size_t)n + 1, sizeof *g_dr);
  size_t vcap = (size_t)size + strlen(vprefix) + 32;
  char *val = malloc(vcap), key[512];
  if (g_dr == NULL || val == NULL)
    die(1, "out of memory");
  for (long i = 0; i < n; i++) {
    int kl = snprintf(key, sizeof key, "%s%ld", kprefix, i);
    size_t vl = (size_t)snprintf(val, vcap, "%s%ld", vprefix, i);
    while ((long)vl < size)
      val[vl++] = 'x';
    produce_one(rk, topic, partition, kprefix[0] ? key : NULL, kprefix[0] ? (size_t)kl : 0, val, vl,
                NULL, 0, &g_dr[i]);
    rd_kafka_poll(rk, 0);
  }
  flush_all(rk, (size_t)n);
  /* Per-partition counts: {"delivered":N,"partitions":{"0":n0,...}} */
  int32_t maxp = -1;
  for (long i = 0; i < n; i++)
    if (g_dr[i].partition > maxp)
      maxp = g_dr[i].partition;
  long *per = calloc((size_t)maxp + 2, sizeof *per);
  for (long i = 0; i < n; i++)
    per[g_dr[i].partition]++;
  printf("{\"delivered\":%ld,\"partitions\":{", n);
  bool first = true;
  for (int32_t p = 0; p <= maxp; p++)
    if (per[p]) {
      printf("%s\"%" PRId32 "\":%ld", first ? "" : ",", p, per[p]);
      first = false;
    }
  printf("}}\n");
  free(per);
  free(val);
  free(g_dr);
  destroy_client(rk);
  return 0;
}

static int produce_json(const char *topic) {
  rd_kafka_t *rk = new_producer();
  size_t cap = 1024, n = 0;
  g_dr = calloc(cap, sizeof *g_dr);
  char *line = NULL;
  size_t linecap = 0;
  ssize_t len;
  while ((len = getline(&line, &linecap, stdin)) >= 0) {
    if (len == 0 || line[0] == '\n')
      continue;
    json_error_t jerr;
    json_t *rec = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &jerr);
    if (!json_is_object(rec))
      die(2, "stdin line %zu: not a JSON object (%s)", n + 1, jerr.text);
    if (n == cap) {
      cap *= 2;
      g_dr = realloc(g_dr, cap * sizeof *g_dr);
      if (g_dr == NULL)
        die(1, "out of memory");
    }
    memset(&g_dr[n], 0, sizeof g_dr[n]);
    char *key = NULL, *val = NULL;
    size_t klen = 0, vlen = 0;
    json_t *j;
    if ((j = json_object_get(rec, "key")) != NULL && json_is_string(j))
      key = latin1_bytes(j, &klen, "key");
    if ((j = json_object_get(rec, "value")) != NULL && json_is_string(j))
      val = latin1_bytes(j, &vlen, "value");
    int32_t part = RD_KAFKA_PARTITION_UA;
    if ((j = json_object_get(rec, "partition")) != NULL && json_is_integer(j))
      part = (int32_t)json_integer_value(j);
    int64_t ts = 0;
    if ((j = json_object_get(rec, "timestamp")) != NULL && json_is_integer(j))
      ts = json_integer_value(j);
    rd_kafka_headers_t *hdrs = NULL;
    if ((j = json_object_get(rec, "headers")) != NULL && json_is_array(j) && json_array_size(j)) {
      hdrs = rd_kafka_headers_new(json_array_size(j));
      size_t i;
      json_t *h;
      json_array_foreach(j, i, h) {
        json_t *hk = json_array_get(h, 0), *hv = json_array_get(h, 1);
        if (!json_is_string(hk))
          die(2, "stdin line %zu: headers are [name, value] pairs", n + 1);
        size_t hkl, hvl = 0;
        char *hks = latin1_bytes(hk, &hkl, "header name"), *hvs = NULL;
        if (json_is_string(hv))
          hvs = latin1_bytes(hv, &hvl, "header value");
        rd_kafka_header_add(hdrs, hks, (ssize_t)hkl, hvs, (ssize_t)hvl);
        free(hks);
        free(hvs);
      }
    }
    produce_one(rk, topic, part, key, klen, val, vlen, hdrs, ts, &g_dr[n]);
    n++;
    free(key);
    free(val);
    json_decref(rec);
    rd_kafka_poll(rk, 0);
  }
  free(line);
  flush_all(rk, n);
  for (size_t i = 0; i < n; i++)
    printf("{\"partition\":%" PRId32 ",\"offset\":%" PRId64 "}\n", g_dr[i].partition, g_dr[i].offset);
  free(g_dr);
  destroy_client(rk);
  return 0;
}

static int cmd_produce(int argc, char **argv) {
  if (argc < 2)
    usage();
  const char *topic = argv[1], *kprefix = "key-", *vprefix = "value-";
  long n = -1, size = 0;
  int32_t partition = RD_KAFKA_PARTITION_UA;
  bool json = false;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
      n = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "-p") == 0)
      partition = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "-s") == 0)
      size = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "-k") == 0)
      kprefix = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "-v") == 0)
      vprefix = argv[++i];
    else
      usage();
  }
  if (json == (n >= 0))
    die(2, "produce wants exactly one of -n N and --json");
  return json ? produce_json(topic) : produce_generated(topic, n, partition, size, kprefix, vprefix);
}

/* ---- consume, offsets, committed ---------------------------------------------------------- */

static int cmd_consume(int argc, char **argv) {
  if (argc < 2)
    usage();
  const char *topic = argv[1];
  long want = -1;
  int32_t only = -1;
  int64_t from = RD_KAFKA_OFFSET_BEGINNING;
  bool count_only = false;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--count-only") == 0)
      count_only = true;
    else if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
      want = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "-p") == 0)
      only = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--from") == 0)
      from = atoll(argv[++i]);
    else
      usage();
  }
  rd_kafka_conf_t *conf = base_conf();
  /* librdkafka wants a group.id even for assign(); assign() never joins it, nothing commits. */
  char group[64];
  snprintf(group, sizeof group, "sluice-kafka-admin-%ld", (long)getpid());
  conf_set(conf, "group.id", group);
  conf_set(conf, "enable.auto.commit", "false");
  conf_set(conf, "enable.auto.offset.store", "false");
  conf_set(conf, "fetch.wait.max.ms", "100");
  conf_set(conf, "enable.partition.eof", "true");
  rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, conf);
  rd_kafka_poll_set_consumer(rk);

  const rd_kafka_metadata_t *md = wait_topic(rk, topic, 0);
  int np = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  if (only >= np)
    die(1, "topic %s has %d partitions, no partition %d", topic, np, (int)only);

  /* Without -n: read up to each partition's end as of now (its high watermark; the
   * partition-EOF event covers an end that is a transaction marker, not a record). */
  int64_t *end = calloc((size_t)np, sizeof *end);
  bool *done = calloc((size_t)np, sizeof *done);
  if (end == NULL || done == NULL)
    die(1, "out of memory");
  long left_parts = 0;
  rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(np);
  for (int p = 0; p < np; p++) {
    if (only >= 0 && p != only) {
      done[p] = true;
      continue;
    }
    rd_kafka_topic_partition_list_add(assign, topic, p)->offset = from;
    if (want < 0) {
      int64_t lo, hi;
      rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, remaining_ms());
      if (err)
        die(1, "watermarks of %s[%d]: %s", topic, p, rd_kafka_err2str(err));
      end[p] = hi;
      if ((from >= 0 ? from : lo) >= hi)
        done[p] = true;
      else
        left_parts++;
    }
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, assign);
  if (err)
    die(1, "assign: %s", rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_destroy(assign);

  long got = 0;
  int rc = 0;
  while (want >= 0 ? got < want : left_parts > 0) {
    int left = remaining_ms();
    if (left <= 0) {
      if (want >= 0)
        fprintf(stderr, "kafka_admin: consume %s: %ld of %ld records within %.1f s\n", topic, got,
                want, g_timeout);
      else
        fprintf(stderr, "kafka_admin: consume %s: %ld records within %.1f s, %ld partitions not read to their end\n",
                topic, got, g_timeout, left_parts);
      rc = 3;
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left < 200 ? left : 200);
    if (m == NULL)
      continue;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        die(1, "consume %s: %s", topic, rd_kafka_message_errstr(m));
      if (want < 0 && m->partition >= 0 && m->partition < np && !done[m->partition] &&
          m->offset >= end[m->partition]) {
        done[m->partition] = true;
        left_parts--;
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    if (want < 0) {
      if (m->partition < 0 || m->partition >= np || m->offset >= end[m->partition]) {
        rd_kafka_message_destroy(m); /* produced after we started: not ours to read */
        continue;
      }
      if (m->offset + 1 >= end[m->partition] && !done[m->partition]) {
        done[m->partition] = true;
        left_parts--;
      }
    }
    got++;
    if (!count_only) {
      rd_kafka_timestamp_type_t tst;
      int64_t ts = rd_kafka_message_timestamp(m, &tst);
      printf("{\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"timestamp\":%" PRId64 ",\"key\":",
             m->partition, m->offset, ts);
      put_bytes(m->key, m->key_len);
      printf(",\"value\":");
      put_bytes(m->payload, m->len);
      printf(",\"headers\":[");
      rd_kafka_headers_t *hdrs = NULL;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t vlen;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == 0; i++) {
          printf("%s[", i ? "," : "");
          put_bytes(name, strlen(name));
          putchar(',');
          put_bytes(val, vlen);
          putchar(']');
        }
      }
      printf("]}\n");
    }
    rd_kafka_message_destroy(m);
  }
  if (count_only)
    printf("{\"count\":%ld}\n", got);
  fflush(stdout);
  free(end);
  free(done);
  rd_kafka_consumer_close(rk);
  destroy_client(rk);
  return rc;
}

static int cmd_offsets(int argc, char **argv) {
  if (argc != 2)
    usage();
  rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, base_conf());
  const rd_kafka_metadata_t *md = wait_topic(rk, argv[1], 0);
  int np = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  putchar('{');
  for (int p = 0; p < np; p++) {
    int64_t lo, hi;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, argv[1], p, &lo, &hi, remaining_ms());
    if (err)
      die(1, "watermarks of %s[%d]: %s", argv[1], p, rd_kafka_err2str(err));
    printf("%s\"%d\":[%" PRId64 ",%" PRId64 "]", p ? "," : "", p, lo, hi);
  }
  printf("}\n");
  destroy_client(rk);
  return 0;
}

static int cmd_committed(int argc, char **argv) {
  if (argc != 3)
    usage();
  const char *group = argv[1], *topic = argv[2];
  rd_kafka_conf_t *conf = base_conf();
  conf_set(conf, "group.id", group);
  conf_set(conf, "enable.auto.commit", "false");
  rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, conf);
  const rd_kafka_metadata_t *md = wait_topic(rk, topic, 0);
  int np = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
  for (int p = 0; p < np; p++)
    rd_kafka_topic_partition_list_add(l, topic, p);
  rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, remaining_ms());
  if (err)
    die(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? 3 : 1, "committed offsets of group %s: %s", group,
        rd_kafka_err2str(err));
  putchar('{');
  for (int i = 0; i < l->cnt; i++) {
    if (l->elems[i].err)
      die(1, "committed offset of %s[%d]: %s", topic, (int)l->elems[i].partition,
          rd_kafka_err2str(l->elems[i].err));
    printf("%s\"%" PRId32 "\":%" PRId64, i ? "," : "", l->elems[i].partition,
           l->elems[i].offset < 0 ? -1 : l->elems[i].offset);
  }
  printf("}\n");
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_consumer_close(rk);
  destroy_client(rk);
  return 0;
}

static int cmd_commit(int argc, char **argv) {
  if (argc < 4)
    usage();
  const char *group = argv[1], *topic = argv[2];
  rd_kafka_conf_t *conf = base_conf();
  conf_set(conf, "group.id", group);
  conf_set(conf, "enable.auto.commit", "false");
  rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, conf);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(argc - 3);
  for (int i = 3; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (eq == NULL)
      die(2, "commit wants PARTITION=OFFSET, not %s", argv[i]);
    rd_kafka_topic_partition_list_add(l, topic, atoi(argv[i]))->offset = atoll(eq + 1);
  }
  rd_kafka_resp_err_t err = rd_kafka_commit(rk, l, 0);
  if (err)
    die(1, "commit for group %s: %s", group, rd_kafka_err2str(err));
  for (int i = 0; i < l->cnt; i++)
    if (l->elems[i].err)
      die(1, "commit of %s[%d] for group %s: %s", topic, (int)l->elems[i].partition, group,
          rd_kafka_err2str(l->elems[i].err));
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_consumer_close(rk);
  destroy_client(rk);
  return 0;
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
      g_bootstrap = argv[++i];
    else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
      g_timeout = atof(argv[++i]);
    else
      usage();
  }
  if (g_bootstrap == NULL || i >= argc || g_timeout <= 0)
    usage();
  g_deadline = now_s() + g_timeout;
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  const char *cmd = argv[i];
  argc -= i;
  argv += i;
  int rc;
  if (strcmp(cmd, "create-topic") == 0)
    rc = cmd_create_topic(argc, argv);
  else if (strcmp(cmd, "delete-topic") == 0)
    rc = cmd_delete_topic(argc, argv);
  else if (strcmp(cmd, "describe") == 0)
    rc = cmd_describe(argc, argv);
  else if (strcmp(cmd, "produce") == 0)
    rc = cmd_produce(argc, argv);
  else if (strcmp(cmd, "consume") == 0)
    rc = cmd_consume(argc, argv);
  else if (strcmp(cmd, "offsets") == 0)
    rc = cmd_offsets(argc, argv);
  else if (strcmp(cmd, "committed") == 0)
    rc = cmd_committed(argc, argv);
  else if (strcmp(cmd, "commit") == 0)
    rc = cmd_commit(argc, argv);
  else
    usage();
  fflush(stdout);
  return rc;
}

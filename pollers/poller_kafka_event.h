/*
 * poller_kafka_event.h - the JSON shapes of the Kafka source (issue 5): the event a function
 * receives (lambda-spec 2.4), the function's partial batch response (lambda-spec 2.6) and the
 * on-failure records (lambda-spec 3.2). Internal header of the pollers module: only pollers/
 * files (and the unit tests) include it; other modules see nothing of it.
 *
 * Pure functions: no I/O, no clock (the caller passes "now"), no librdkafka types (the Kafka
 * poller converts an rd_kafka_message_t into a struct pl_kafka_record of borrowed views), so
 * everything here is testable without a broker. One batch is one topic-partition, Kafka's
 * ordering unit. Every decision about the shapes is written down for function authors in
 * schemas/kafka-event.schema.json and schemas/kafka-failure-record.schema.json; the code in
 * poller_kafka_event.c and those schemas change together.
 *
 * Errors are negative SL_E* codes (broker/broker.h).
 */
#ifndef SLUICE_POLLER_KAFKA_EVENT_H
#define SLUICE_POLLER_KAFKA_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* A record's timestamp type, as librdkafka's rd_kafka_timestamp_type_t reports it. */
enum pl_kafka_ts_type {
    PL_KAFKA_TS_NOT_AVAILABLE = 0, /* message format v0 (Kafka < 0.10): timestamp_ms is -1 */
    PL_KAFKA_TS_CREATE_TIME,       /* set by the producer */
    PL_KAFKA_TS_LOG_APPEND_TIME,   /* set by the broker (topic message.timestamp.type) */
};

/* One record header. name and value are borrowed views; a Kafka header may repeat a name. */
struct pl_kafka_header {
    const char *name; /* name_len bytes, need not be NUL-terminated nor UTF-8 */
    size_t name_len;
    const uint8_t *value; /* value_len bytes; ignored when !present */
    size_t value_len;
    bool present; /* false: the header's value is null (distinct from empty) */
};

/*
 * One Kafka record as the encoder needs it: borrowed views into the consumer's message, valid
 * for the call they are passed to. Nothing is kept.
 */
struct pl_kafka_record {
    const char *topic; /* NUL-terminated */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* epoch milliseconds; -1 when timestamp_type is NOT_AVAILABLE */
    enum pl_kafka_ts_type timestamp_type;
    const uint8_t *key; /* key_len bytes; ignored when !key_present */
    size_t key_len;
    bool key_present; /* false: the message has no key (null key) */
    const uint8_t *value;
    size_t value_len;
    bool value_present;                    /* false: null value, a tombstone */
    const struct pl_kafka_header *headers; /* nheaders entries, in the message's order */
    size_t nheaders;
};

/* ---------------------------------------------------------------------------------------- */
/* The event (lambda-spec 2.4)                                                              */
/* ---------------------------------------------------------------------------------------- */

/*
 * Writes the start of a batch's event to out:
 *   {"eventSource":"SelfManagedKafka","bootstrapServers":"<bootstrap_servers>",
 *    "records":{"<topic>-<partition>":[
 * bootstrap_servers and topic are borrowed for the call (NUL-terminated; bytes that are not
 * UTF-8 become U+FFFD). Returns 0, SL_EINVAL (a NULL argument), SL_ENOMEM. On failure out may
 * end with part of the prefix: the caller discards out.
 */
int pl_kafka_event_begin(struct evbuffer *out, const char *bootstrap_servers, const char *topic,
                         int32_t partition);

/*
 * Appends one record object to out, preceded by ',' unless first. Members, in this order:
 * topic, partition, offset, timestamp (numbers), timestampType ("CREATE_TIME",
 * "LOG_APPEND_TIME", or "NO_TIMESTAMP_TYPE" when not available, with timestamp -1, as Kafka's
 * Java client names it), key and value (standard padded base64; each ABSENT when null, "" when
 * empty), headers (an array, in message order, of one-entry objects {name: [byte, ...]} with
 * bytes as signed integers -128..127, Java byte semantics; a null header value is written as
 * {name: null}; a name that is not UTF-8 has each maximal ill-formed subpart replaced by
 * U+FFFD, as Java's String decoding of a header key does). r and its views are borrowed for the
 * call. The output is written in place into out's reserved space (no intermediate copy).
 * Returns 0, SL_EINVAL (r or r->topic NULL, a NULL view with a non-zero length), SL_ENOMEM.
 * On failure out may end with part of a record: the caller discards out.
 */
int pl_kafka_append_record(struct evbuffer *out, const struct pl_kafka_record *r, bool first);

/* Writes the end of the event, "]}}". Returns 0, SL_EINVAL (out NULL), SL_ENOMEM. */
int pl_kafka_event_end(struct evbuffer *out);

/* ---------------------------------------------------------------------------------------- */
/* Partial batch responses (lambda-spec 2.6)                                                */
/* ---------------------------------------------------------------------------------------- */

/*
 * Reads a function's response under ReportBatchItemFailures for the batch of n records of
 * topic-partition "<topic>-<partition>" whose offsets are offsets[0..n) (strictly ascending,
 * as a partition delivers them; borrowed for the call). Rules:
 *   all succeeded (*lowest_failed = n): an empty body (or only JSON whitespace), null, an
 *     object without batchItemFailures (other keys are ignored), batchItemFailures null or [];
 *   these failed: batchItemFailures is an array of objects whose "itemIdentifier" is an object
 *     {"topic-partition": "<topic>-<partition>", "offset": N} naming a record of the batch;
 *     N is a JSON integer or a string of 1 to 19 ASCII decimal digits (leading zeros allowed,
 *     nothing else: no sign, space, fraction or exponent), since functions in languages without
 *     64-bit integers echo offsets as strings. Other keys of an item and of an identifier are
 *     ignored; an identifier listed twice is fine;
 *   invalid, so the whole batch failed (SL_EPROTO): not JSON (including trailing bytes or
 *     invalid UTF-8), a top level that is neither an object nor null, batchItemFailures not an
 *     array or null, an item that is not an object, an itemIdentifier missing, null or not an
 *     object, a topic-partition missing, not a string or not this batch's (exact bytes, so
 *     "mytopic-00" does not name "mytopic-0"), an offset missing, of another type (a real
 *     such as 100.0, a boolean), malformed, or not an offset of the batch.
 * Lambda's table says Kafka retries "reported records only". A partition has one committed
 * offset, so Sluice cannot commit past a failed record: it uses the stream semantics of
 * Kinesis instead, *lowest_failed = the index of the smallest reported offset; records before
 * it succeeded and are committed, that record and every later one are retried (at least once,
 * as promised). Cost: O(n) to check offsets[] plus O(m log n) for m reported items.
 * Returns 0 and sets *lowest_failed in [0, n]; SL_EPROTO (invalid, see above); SL_EINVAL
 * (offsets not strictly ascending, a NULL topic, lowest_failed or non-empty offsets);
 * SL_ENOMEM. On any error *lowest_failed is 0 (if lowest_failed is not NULL), so a caller that
 * only reads it retries the whole batch. offsets may be NULL when n is 0.
 */
int pl_kafka_parse_batch_response(const uint8_t *body, size_t len, const char *topic,
                                  int32_t partition, const int64_t *offsets, size_t n,
                                  size_t *lowest_failed);

/* ---------------------------------------------------------------------------------------- */
/* On-failure records (lambda-spec 3.2)                                                     */
/* ---------------------------------------------------------------------------------------- */

/*
 * What a Kafka on-failure record says. Every pointer is borrowed for the call (strings
 * NUL-terminated, bytes that are not UTF-8 become U+FFFD); nothing is kept. Strings are
 * required (non-NULL) unless said otherwise.
 */
struct pl_kafka_failure {
    /* requestContext */
    const char *request_id;   /* the last invocation's; NULL (-> null) when never invoked */
    const char *function_arn; /* with its qualifier */
    const char *condition;    /* "RetryAttemptsExhausted", "RecordAgeExceeded",
                                 "MaximumPayloadSizeExceeded", "RetriesExhausted" (the docs'
                                 spelling for kafka:// destinations) ... written as given */
    int64_t approximate_invoke_count;
    /* responseContext; has_response false -> "responseContext":null (no invocation response,
       e.g. MaximumPayloadSizeExceeded) */
    bool has_response;
    int status_code;
    const char *executed_version; /* "$LATEST"; required when has_response */
    const char *function_error;   /* "Unhandled", "Handled"; NULL: the member is omitted */
    /* the record's own "timestamp": when it is written, epoch ms, the caller's clock */
    int64_t now_ms;
    /* KafkaBatchInfo */
    const char *event_source_arn;  /* the mapping's EventSourceArn, without credentials */
    const char *bootstrap_servers; /* also the "bootstrapServers" of the payload event */
    /* The failed records, in offset order, all of one topic-partition: n >= 1. */
    const struct pl_kafka_record *records;
    size_t n;
    /* Optional: the JSON text of the event that held exactly these records, as
       pl_kafka_event_begin/append/end wrote it, embedded verbatim as "payload" (not re-encoded,
       not checked). NULL: the event is encoded from records. Used by pl_kafka_failure_record
       only. */
    const uint8_t *payload;
    size_t payload_len;
};

/*
 * Writes the SQS/SNS/S3/file variant of the on-failure record for f's records to out, as
 * compact JSON, members in this order:
 *   requestContext {requestId, functionArn, condition, approximateInvokeCount},
 *   responseContext {statusCode, executedVersion, functionError} or null,
 *   version "1.0", timestamp (f->now_ms, ISO 8601 UTC with milliseconds),
 *   KafkaBatchInfo {batchSize (n), eventSourceArn, bootstrapServers, payloadSize (bytes of
 *     payload's JSON text), recordsInfo {"<topic>-<partition>": {firstRecordOffset,
 *     lastRecordOffset (decimal strings), firstRecordTimestamp, lastRecordTimestamp (ISO, or
 *     null for a record without a timestamp or one outside years 1970..9999)}}},
 *   payload: the event itself, a JSON object.
 * AWS puts "payload" only into S3 records; Sluice always does, since its dead letters must
 * carry enough to replay (design: "the payload itself, not only pointers"). A consumer with a
 * size limit (SNS 256 KB) is the destination's concern, not this function's.
 * All or nothing: out is only appended to on success. Returns 0; SL_EINVAL (f, out or records
 * NULL, n 0, a required string NULL, now_ms outside 1970..9999, a payload of 0 bytes, records
 * of different topic-partitions, a record's bad view); SL_ENOMEM.
 */
int pl_kafka_failure_record(struct evbuffer *out, const struct pl_kafka_failure *f);

/*
 * Writes the kafka:// destination variant for the record f->records[i]: one message per failed
 * record (the caller produces it with that record's key). Same members as above except
 * KafkaBatchInfo {batchSize 1, eventSourceArn, bootstrapServers, payloadSize, recordInfo
 * {offset (decimal string), timestamp (ISO or null)}}, and "payload" is an event holding just
 * that record (f->payload is ignored). All or nothing, like pl_kafka_failure_record. Returns 0;
 * SL_EINVAL (as above, or i >= f->n); SL_ENOMEM.
 */
int pl_kafka_failure_record_one(struct evbuffer *out, const struct pl_kafka_failure *f, size_t i);

#endif

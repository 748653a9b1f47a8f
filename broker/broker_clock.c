/* broker_clock.c - wall and monotonic clocks, ISO-8601 formatting, UUIDs. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "broker/broker.h"

int64_t sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sl_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

char *sl_iso8601_ms(int64_t epoch_ms, char *out, size_t outsz)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(epoch_ms % 1000));
    return out;
}

static void format_uuid4(unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void sl_idgen_init(struct sl_idgen *g)
{
    if (RAND_bytes((unsigned char *)g->s, sizeof(g->s)) != 1) {
        g->s[0] = (uint64_t)sl_mono_ns() * 0x9e3779b97f4a7c15ull;
        g->s[1] = (uint64_t)sl_now_ms() ^ 0xbf58476d1ce4e5b9ull;
    }
    if (!g->s[0] && !g->s[1])
        g->s[1] = 1;
}

static uint64_t xorshift128p(struct sl_idgen *g)
{
    uint64_t a = g->s[0];
    const uint64_t b = g->s[1];
    g->s[0] = b;
    a ^= a << 23;
    g->s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return g->s[1] + b;
}

void sl_idgen_uuid4(struct sl_idgen *g, char out[37])
{
    unsigned char b[16];
    uint64_t x = xorshift128p(g), y = xorshift128p(g);
    memcpy(b, &x, 8);
    memcpy(b + 8, &y, 8);
    format_uuid4(b, out);
}

void sl_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* RAND_bytes only fails without entropy; fall back to a weaker but unique source. */
        int64_t t = sl_mono_ns() ^ sl_now_ms();
        for (int i = 0; i < 16; i++)
            b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 37);
    }
    format_uuid4(b, out);
}


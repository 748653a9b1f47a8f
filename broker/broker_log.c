/* broker_log.c - one line per event on stderr, with time, level and component. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"

/* Process-wide by nature (it filters the one stderr); set once at start-up. */
static enum sl_log_level g_level = SL_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void sl_log_set_level(enum sl_log_level level)
{
    g_level = level;
}

void sl_logv(enum sl_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (level < g_level)
        return;
    char ts[40], line[4096];
    sl_iso8601_ms(sl_now_ms(), ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s %-5s %s: ", ts, level_names[level], component);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line so lines from several processes do not interleave. */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void sl_log(enum sl_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_logv(level, component, fmt, ap);
    va_end(ap);
}

char *sl_log_escape(const void *data, size_t len, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t o = 0;
    if (outsz == 0)
        return out;
    for (size_t i = 0; i < len; i++) {
        char tmp[5];
        size_t k = 0;
        unsigned char c = p[i];
        if (c == '\\' || c == '"') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c == '\n') {
            tmp[k++] = '\\';
            tmp[k++] = 'n';
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[k++] = (char)c;
        } else {
            tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        }
        if (o + k + 4 > outsz) {
            if (outsz >= 4) {
                while (o + 4 > outsz)
                    o--;
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o < outsz ? o : outsz - 1] = '\0';
    return out;
}

/* broker_err.c - names and sentences for the SL_E* codes, generated from SL_ERRNO_MAP. */
#include "broker/broker.h"

const char *sl_err_name(int err)
{
    switch (err) {
    case SL_OK:
        return "SL_OK";
#define SL_ERR_NAME(name, code, text)                                                        \
    case SL_E##name:                                                                         \
        return "SL_E" #name;
        SL_ERRNO_MAP(SL_ERR_NAME)
#undef SL_ERR_NAME
    }
    return "SL_E?";
}

const char *sl_strerror(int err)
{
    switch (err) {
    case SL_OK:
        return "success";
#define SL_ERR_TEXT(name, code, text)                                                        \
    case SL_E##name:                                                                         \
        return text;
        SL_ERRNO_MAP(SL_ERR_TEXT)
#undef SL_ERR_TEXT
    }
    return "unknown error";
}

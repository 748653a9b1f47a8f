/*
 * testlib.h - the unit tests' assertions. They print both operands and the location, survive
 * NDEBUG, and exit the test binary with status 1 on the first failure.
 */
#ifndef SLUICE_TESTLIB_H
#define SLUICE_TESTLIB_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_FAIL(...)                                                                          \
    do {                                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                                \
        fprintf(stderr, __VA_ARGS__);                                                        \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

#define T_ASSERT(cond)                                                                       \
    do {                                                                                     \
        if (!(cond))                                                                         \
            T_FAIL("%s", #cond);                                                             \
    } while (0)

#define T_EQ_INT(a, b)                                                                       \
    do {                                                                                     \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                              \
        if (t_a_ != t_b_)                                                                    \
            T_FAIL("%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);                            \
    } while (0)

#define T_EQ_STR(a, b)                                                                       \
    do {                                                                                     \
        const char *t_a_ = (a), *t_b_ = (b);                                                 \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0)                                       \
            T_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, t_a_ ? t_a_ : "(null)",             \
                   t_b_ ? t_b_ : "(null)");                                                  \
    } while (0)

#define T_CONTAINS(hay, needle)                                                              \
    do {                                                                                     \
        const char *t_h_ = (hay), *t_n_ = (needle);                                          \
        if (!t_h_ || !strstr(t_h_, t_n_))                                                    \
            T_FAIL("%s contains %s: \"%s\" lacks \"%s\"", #hay, #needle,                     \
                   t_h_ ? t_h_ : "(null)", t_n_);                                            \
    } while (0)

/* Runs one test function and reports it. */
#define T_RUN(fn)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "-- %s\n", #fn);                                                     \
        fn();                                                                                \
    } while (0)

#endif

/*
 * util.c - status names, allocation, small helpers shared by the runtime.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct status_entry {
    int code;
    const char *name;
    const char *text;
};

static const struct status_entry status_table[] = {
#define XX(name, val, text) {val, #name, text},
    SMLP_STATUS_MAP(XX)
#undef XX
};

SMLP_API unsigned
smlp_version(void)
{
    return SMLP_VERSION_HEX;
}

SMLP_API const char *
smlp_version_string(void)
{
    return SMLP_STR(SMLP_VERSION_MAJOR) "." SMLP_STR(SMLP_VERSION_MINOR) "."
        SMLP_STR(SMLP_VERSION_PATCH);
}

SMLP_API const char *
smlp_strerror(int status)
{
    size_t i;

    for (i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
        if (status_table[i].code == status)
            return status_table[i].text;
    if (status == SMLP_DECLINED)
        return "declined";
    return "unknown status";
}

SMLP_API const char *
smlp_status_name(int status)
{
    size_t i;

    for (i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
        if (status_table[i].code == status)
            return status_table[i].name;
    if (status == SMLP_DECLINED)
        return "DECLINED";
    return "UNKNOWN";
}

void
smlp__assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "smlp: internal error: %s:%d: assertion '%s' failed\n",
            file, line, cond);
    abort();
}

int
smlp__seterr(struct smlp_error *err, int status, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return status;
    err->status = status;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return status;
}

void *
smlp__malloc(size_t n)
{
    return malloc(n ? n : 1);
}

void *
smlp__calloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

void *
smlp__realloc(void *p, size_t n)
{
    return realloc(p, n ? n : 1);
}

char *
smlp__strdup(const char *s)
{
    size_t n;
    char *d;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void
smlp__free(void *p)
{
    free(p);
}

size_t
smlp__dtype_size(int dtype)
{
    switch (dtype) {
    case SMLP_DTYPE_F32:
    case SMLP_DTYPE_I32:
        return 4;
    default:
        return 0;
    }
}

const char *
smlp__dtype_name(int dtype)
{
    static const char *const names[] = {"f32", "i32"};

    _Static_assert(sizeof(names) / sizeof(names[0]) == SMLP_DTYPE_COUNT,
                   "dtype name table");
    if (dtype < 0 || dtype >= SMLP_DTYPE_COUNT)
        return "?";
    return names[dtype];
}

const char *
smlp__shape_str(const int64_t *shape, int rank, char *buf, size_t len)
{
    size_t used = 0;
    int i;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld",
                                 i ? "," : "", (long long)shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

double
smlp__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
smlp__node_status(struct smlp_node *node, int rc)
{
    if (rc <= 0)
        return rc;
    if (node->err[0] == '\0')
        snprintf(node->err, sizeof(node->err),
                 "returned %d (%s), not 0 or a negative status (a kernel "
                 "turns a node down in supports(), before any run)",
                 rc, smlp_status_name(rc));
    return SMLP_EKERNEL;
}

/*
 * train_moe.c - routing statistics during training (train_moe.h).
 */
#include "train_moe.h"
#include "train_report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PREFIX.load i32 [E, 2] with an f32 scalar PREFIX.aux beside it. */
static int
find_layer(smlp_session_t *s, const char *name, struct train_moe_layer *l)
{
    size_t n = strlen(name);
    char aux[600];

    if (n < 6 || n - 5 >= sizeof(aux) - 4 ||
        strcmp(name + n - 5, ".load") != 0 ||
        smlp_session_tensor(s, name, &l->load) != SMLP_OK ||
        l->load.data == NULL || l->load.dtype != SMLP_DTYPE_I32 ||
        l->load.rank != 2 || l->load.shape[1] != 2 || l->load.shape[0] < 1)
        return 0;
    snprintf(aux, sizeof(aux), "%.*s.aux", (int)(n - 5), name);
    if (smlp_session_tensor(s, aux, &l->aux) != SMLP_OK ||
        l->aux.data == NULL || l->aux.dtype != SMLP_DTYPE_F32 ||
        l->aux.rank != 0)
        return 0;
    l->prefix = name;
    l->prefix_len = n - 5;
    l->experts = l->load.shape[0];
    return 1;
}

int
train_moe_init(struct train_moe *m, smlp_session_t *s, char *err,
               size_t errlen)
{
    int i, n = smlp_session_tensor_count(s, 4); /* outputs */

    memset(m, 0, sizeof(*m));
    m->layers = calloc((size_t)(n > 0 ? n : 1), sizeof(*m->layers));
    if (m->layers == NULL)
        goto oom;
    for (i = 0; i < n; i++) {
        struct train_moe_layer *l = &m->layers[m->n_layers];

        if (!find_layer(s, smlp_session_tensor_name(s, 4, i), l))
            continue;
        l->kept = calloc((size_t)l->experts, sizeof(int64_t));
        l->dropped = calloc((size_t)l->experts, sizeof(int64_t));
        m->n_layers++;
        if (l->kept == NULL || l->dropped == NULL)
            goto oom;
    }
    m->step_vals = malloc((train_moe_values(m) + 1) * sizeof(double));
    if (m->step_vals == NULL)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "--moe-stats: out of memory");
    train_moe_free(m);
    return -1;
}

size_t
train_moe_values(const struct train_moe *m)
{
    size_t n = 0;
    int i;

    for (i = 0; i < m->n_layers; i++)
        n += 2 * (size_t)m->layers[i].experts + 1;
    return n;
}

void
train_moe_get(const struct train_moe *m, double *v)
{
    const struct train_moe_layer *l;
    int64_t e;
    int i;

    for (i = 0; i < m->n_layers; i++) {
        l = &m->layers[i];
        for (e = 0; e < 2 * l->experts; e++)
            *v++ = ((const int32_t *)l->load.data)[e];
        *v++ = *(const float *)l->aux.data;
    }
}

void
train_moe_step_values(struct train_moe *m, const double *v, int ranks)
{
    struct train_moe_layer *l;
    int64_t e, kept, dropped;
    int i;

    for (i = 0; i < m->n_layers; i++) {
        l = &m->layers[i];
        for (e = 0; e < l->experts; e++) {
            kept = (int64_t)v[2 * e];
            dropped = (int64_t)v[2 * e + 1];
            l->kept[e] += kept;
            l->dropped[e] += dropped;
            m->ep_kept += kept;
            m->ep_dropped += dropped;
        }
        v += 2 * l->experts;
        l->aux_sum += *v++ / ranks;
    }
    m->row_steps++;
}

/* The values are exact (counts below 2^53, a float aux), so this adds
 * what the tensors hold. */
void
train_moe_step(struct train_moe *m)
{
    train_moe_get(m, m->step_vals);
    train_moe_step_values(m, m->step_vals, 1);
}

static int
add_line(struct train_moe *m, const char *line)
{
    char *copy;

    if (m->n_lines == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        char **p = realloc(m->lines, cap * sizeof(*p));

        if (p == NULL)
            return -1;
        m->lines = p;
        m->cap = cap;
    }
    copy = strdup(line);
    if (copy == NULL)
        return -1;
    m->lines[m->n_lines++] = copy;
    return 0;
}

int
train_moe_row(struct train_moe *m, int64_t step, double epoch)
{
    char line[1024];
    int i;
    int64_t e;

    if (m->row_steps == 0)
        return 0;
    for (i = 0; i < m->n_layers; i++) {
        struct train_moe_layer *l = &m->layers[i];

        for (e = 0; e < l->experts; e++) {
            snprintf(line, sizeof(line),
                     "%" PRId64 ",%.6f,%.*s,%" PRId64 ",%" PRId64 ",%" PRId64
                     ",%.9g",
                     step, epoch, (int)l->prefix_len, l->prefix, e,
                     l->kept[e], l->dropped[e],
                     l->aux_sum / (double)m->row_steps);
            if (add_line(m, line) != 0)
                return -1;
            l->kept[e] = l->dropped[e] = 0;
        }
        l->aux_sum = 0.0;
    }
    m->row_steps = 0;
    return 0;
}

double
train_moe_epoch(struct train_moe *m)
{
    int64_t all = m->ep_kept + m->ep_dropped;
    double share = all > 0 ? (double)m->ep_dropped / (double)all : NAN;

    m->ep_kept = m->ep_dropped = 0;
    return share;
}

char *
train_moe_sums(const struct train_moe *m, int with_epoch)
{
    size_t len = 64, n;
    char *buf;
    int i;
    int64_t e;

    for (i = 0; i < m->n_layers; i++)
        len += 32 + 42 * (size_t)m->layers[i].experts;
    buf = malloc(len);
    if (buf == NULL)
        return NULL;
    n = (size_t)snprintf(buf, len, "%" PRId64 " %" PRId64 " %" PRId64,
                         with_epoch ? m->ep_kept : 0,
                         with_epoch ? m->ep_dropped : 0, m->row_steps);
    for (i = 0; i < m->n_layers; i++) {
        const struct train_moe_layer *l = &m->layers[i];

        n += (size_t)snprintf(buf + n, len - n, " %.17g", l->aux_sum);
        for (e = 0; e < l->experts; e++)
            n += (size_t)snprintf(buf + n, len - n, " %" PRId64 " %" PRId64,
                                  l->kept[e], l->dropped[e]);
    }
    return buf;
}

/* The next integer of *p into *out, or -1. */
static int
next_int(const char **p, int64_t *out)
{
    char *end;

    *out = strtoll(*p, &end, 10);
    if (end == *p || *out < 0)
        return -1;
    *p = end;
    return 0;
}

int
train_moe_set_sums(struct train_moe *m, const char *sums)
{
    const char *p = sums;
    char *end;
    int i;
    int64_t e;

    if (p == NULL)
        return 0;
    if (next_int(&p, &m->ep_kept) != 0 || next_int(&p, &m->ep_dropped) != 0 ||
        next_int(&p, &m->row_steps) != 0)
        return -1;
    for (i = 0; i < m->n_layers; i++) {
        struct train_moe_layer *l = &m->layers[i];

        l->aux_sum = strtod(p, &end);
        if (end == p)
            return -1;
        p = end;
        for (e = 0; e < l->experts; e++)
            if (next_int(&p, &l->kept[e]) != 0 ||
                next_int(&p, &l->dropped[e]) != 0)
                return -1;
    }
    return *p == '\0' ? 0 : -1;
}

int
train_moe_read(struct train_moe *m, const char *path, int64_t max_step,
               char *err, size_t errlen)
{
    char line[1024], *end;
    FILE *f;
    int lineno = 1;
    long long step;
    size_t n;

    if (train_csv_open(path, TRAIN_MOE_CSV_HEADER, "--moe-stats", &f, err,
                       errlen) != 0)
        return -1;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        n = strlen(line);
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue; /* a blank line (an editor's): no row */
        if (n + 1 < sizeof(line) && line[n - 1] != '\n' && feof(f)) {
            line[n++] = '\n'; /* the last line, its newline removed */
            line[n] = '\0';
        }
        step = strtoll(line, &end, 10);
        if (n == 0 || line[n - 1] != '\n' || end == line || *end != ',') {
            snprintf(err, errlen, "%s:%d: not a row of smlp-train's "
                                  "--moe-stats", path, lineno);
            fclose(f);
            return -1;
        }
        if (step > max_step)
            break;
        line[n - 1] = '\0';
        if (add_line(m, line) != 0) {
            snprintf(err, errlen, "%s: out of memory", path);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

static int
fill_csv(FILE *f, void *arg)
{
    const struct train_moe *m = arg;
    size_t i;

    fprintf(f, "%s\n", TRAIN_MOE_CSV_HEADER);
    for (i = 0; i < m->n_lines; i++)
        fprintf(f, "%s\n", m->lines[i]);
    return 0;
}

int
train_moe_write(const struct train_moe *m, const char *path, char *err,
                size_t errlen)
{
    return train_write_atomic(path, fill_csv, (void *)m, err, errlen);
}

void
train_moe_free(struct train_moe *m)
{
    size_t i;
    int k;

    for (k = 0; k < m->n_layers; k++) {
        free(m->layers[k].kept);
        free(m->layers[k].dropped);
    }
    free(m->layers);
    free(m->step_vals);
    for (i = 0; i < m->n_lines; i++)
        free(m->lines[i]);
    free(m->lines);
    memset(m, 0, sizeof(*m));
}

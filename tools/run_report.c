/*
 * run_report.c - smlp-run's MoE layer table and JSON report.
 *
 * MoE layers are found by their gate nodes (op "moe.gate.*", or a plugin's
 * "P.gate" / "P.gate.*" such as expertchoice.gate; OPS.md gate
 * contract): output 0 `expert` [N,k], 3 `slot_item` [E,M], 4 `aux` [],
 * 5 `load` [E,2].  aux and load are readable after a run when the graph
 * marks them as outputs (the shipped graphs do); the layer's group size
 * comes from its `group_size` attribute (0 or absent: all N items).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "run_report.h"

static int
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
fill_layer(smlp_session_t *s, const smlp_graph_t *g, int i,
           struct moe_layer *l)
{
    struct smlp_tensor t;
    const char *name;
    int64_t gs = 0;

    name = smlp_session_node_output(s, i, 0);
    if (name != NULL && smlp_session_tensor(s, name, &t) == SMLP_OK &&
        t.rank == 2) {
        l->items = t.shape[0];
        l->k = t.shape[1];
    }
    name = smlp_session_node_output(s, i, 3);
    l->slot_item = name;
    if (name != NULL && smlp_session_tensor(s, name, &t) == SMLP_OK &&
        t.rank == 2) {
        l->experts = t.shape[0];
        l->rows = t.shape[1];
    }
    if (smlp_graph_node_attr_int(g, l->gate, "group_size", &gs) != SMLP_OK ||
        gs <= 0 || gs > l->items)
        gs = l->items;
    l->groups = gs > 0 ? l->items / gs : 0;
    l->capacity = l->groups > 0 ? l->rows / l->groups : 0;
    name = smlp_session_node_output(s, i, 4);
    if (name != NULL && smlp_session_tensor(s, name, &t) == SMLP_OK &&
        t.data != NULL && t.dtype == SMLP_DTYPE_F32) {
        l->has_aux = 1;
        l->aux = *(const float *)t.data;
    }
    name = smlp_session_node_output(s, i, 5);
    if (name != NULL && smlp_session_tensor(s, name, &t) == SMLP_OK &&
        t.data != NULL && t.dtype == SMLP_DTYPE_I32 && t.rank == 2 &&
        t.shape[0] == l->experts && t.shape[1] == 2)
        l->load = (const int32_t *)t.data;
}

/* A gate: "moe.gate.*" or a plugin's "PLUGIN.gate" / "PLUGIN.gate.*"
 * (an out-of-tree router following the gate contract of OPS.md). */
static int
is_gate_op(const char *op)
{
    const char *dot = strchr(op, '.');

    if (starts_with(op, "moe.gate."))
        return 1;
    return dot != NULL && dot != op && starts_with(dot, ".gate") &&
           (dot[5] == '\0' || dot[5] == '.');
}

int
moe_layers_collect(smlp_session_t *s, const smlp_graph_t *g,
                   struct moe_layer **out)
{
    struct smlp_session_stats st;
    struct moe_layer *l;
    int i, n = 0;

    *out = NULL;
    smlp_session_get_stats(s, &st);
    l = calloc((size_t)st.n_nodes + 1, sizeof(*l));
    if (l == NULL)
        return -1;
    for (i = 0; i < st.n_nodes; i++) {
        struct smlp_node_profile p;

        if (smlp_session_node_profile(s, i, &p) != SMLP_OK ||
            !is_gate_op(p.op))
            continue;
        l[n].gate = p.name;
        l[n].op = p.op;
        fill_layer(s, g, i, &l[n]);
        n++;
    }
    *out = l;
    return n;
}

/* See run_report.h. */
uint64_t
moe_node_macs(smlp_session_t *s, int i, const struct moe_layer *l, int n)
{
    struct smlp_node_profile p;
    const char *slot_item;
    int64_t kept = 0, e;
    int j;

    if (smlp_session_node_profile(s, i, &p) != SMLP_OK)
        return 0;
    if (strcmp(p.op, "moe.expert_ffn") != 0 ||
        (slot_item = smlp_session_node_input(s, i, 5)) == NULL)
        return p.macs;
    for (j = 0; j < n; j++)
        if (l[j].slot_item != NULL && strcmp(l[j].slot_item, slot_item) == 0)
            break;
    if (j == n || l[j].load == NULL || l[j].experts <= 0 || l[j].rows <= 0)
        return p.macs;
    for (e = 0; e < l[j].experts; e++)
        kept += l[j].load[2 * e];
    if (kept < 0 || kept > l[j].experts * l[j].rows)
        return p.macs;
    return (uint64_t)((long double)p.macs * (long double)kept /
                      (long double)(l[j].experts * l[j].rows));
}

void
moe_time_collect(smlp_session_t *s, int n_nodes, struct moe_time *t)
{
    int i;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < n_nodes; i++) {
        struct smlp_node_profile p;
        double ms;

        if (smlp_session_node_profile(s, i, &p) != SMLP_OK)
            continue;
        ms = (p.end_us - p.start_us) / 1e3;
        t->all += ms;
        if (is_gate_op(p.op))
            t->gate += ms;
        else if (strcmp(p.op, "moe.dispatch") == 0)
            t->dispatch += ms;
        else if (strcmp(p.op, "moe.expert_ffn") == 0)
            t->experts += ms;
        else if (strcmp(p.op, "moe.combine") == 0)
            t->combine += ms;
    }
}

static void
print_row(FILE *f, const char *label, const int32_t *load, int64_t e0,
          int64_t e1, int col)
{
    int64_t e;

    fprintf(f, "    %-8s", label);
    for (e = e0; e < e1; e++)
        fprintf(f, " %6ld", (long)load[2 * e + col]);
    fprintf(f, "\n");
}

void
moe_layers_print(FILE *f, const struct moe_layer *l, int n,
                 const struct moe_time *t, int training)
{
    double routing, moe_all;
    int i;

    if (n == 0)
        return;
    fprintf(f, "moe layers  %d (%s: items kept / dropped per expert; "
               "capacity = rows per expert per group)\n",
            n, training ? "training" : "inference");
    for (i = 0; i < n; i++) {
        int64_t kept = 0, dropped = 0, e, e0;

        fprintf(f, "  %s  %s  %ld items x k %ld, %ld group(s), capacity "
                   "%ld (%ld rows/expert)",
                l[i].gate, l[i].op, (long)l[i].items, (long)l[i].k,
                (long)l[i].groups, (long)l[i].capacity, (long)l[i].rows);
        if (l[i].has_aux)
            fprintf(f, ", aux %.6g", l[i].aux);
        fprintf(f, "\n");
        if (l[i].load == NULL) {
            fprintf(f, "    (load not kept: mark the gate's output 5 as a "
                       "graph output to see it)\n");
            continue;
        }
        for (e = 0; e < l[i].experts; e++) {
            kept += l[i].load[2 * e];
            dropped += l[i].load[2 * e + 1];
        }
        /* 16 experts a line. */
        for (e0 = 0; e0 < l[i].experts; e0 += 16) {
            int64_t e1 = e0 + 16 < l[i].experts ? e0 + 16 : l[i].experts;

            fprintf(f, "    %-8s", "expert");
            for (e = e0; e < e1; e++)
                fprintf(f, " %6ld", (long)e);
            fprintf(f, "\n");
            print_row(f, "kept", l[i].load, e0, e1, 0);
            print_row(f, "dropped", l[i].load, e0, e1, 1);
        }
        fprintf(f, "    total    kept %ld, dropped %ld (%.2f%% of %ld "
                   "choices)\n",
                (long)kept, (long)dropped,
                kept + dropped ? 100.0 * (double)dropped /
                                     (double)(kept + dropped)
                               : 0.0,
                (long)(kept + dropped));
    }
    routing = t->gate + t->dispatch + t->combine;
    moe_all = routing + t->experts;
    fprintf(f, "moe time    gate %.2f ms, dispatch %.2f, experts %.2f, "
               "combine %.2f: routing (gate+dispatch+combine) %.1f%% of "
               "MoE time, %.1f%% of all node time\n",
            t->gate, t->dispatch, t->experts, t->combine,
            moe_all > 0 ? 100.0 * routing / moe_all : 0.0,
            t->all > 0 ? 100.0 * routing / t->all : 0.0);
}

/* ---- JSON ------------------------------------------------------------ */

static void
jstr(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    fputc('"', f);
    for (; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void
jnum(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fprintf(f, "null");
}

static void
json_moe(FILE *f, const struct run_report *r)
{
    int i;
    int64_t e;

    fprintf(f, "  \"moe\": [");
    for (i = 0; i < r->n_moe; i++) {
        const struct moe_layer *l = &r->moe[i];

        fprintf(f, "%s\n    {\"gate\": ", i ? "," : "");
        jstr(f, l->gate);
        fprintf(f, ", \"op\": ");
        jstr(f, l->op);
        fprintf(f, ", \"experts\": %ld, \"k\": %ld, \"items\": %ld, "
                   "\"groups\": %ld, \"capacity\": %ld, \"rows\": %ld, "
                   "\"aux\": ",
                (long)l->experts, (long)l->k, (long)l->items,
                (long)l->groups, (long)l->capacity, (long)l->rows);
        if (l->has_aux)
            jnum(f, l->aux);
        else
            fprintf(f, "null");
        fprintf(f, ", \"kept\": ");
        for (e = 0; l->load != NULL && e < l->experts; e++)
            fprintf(f, "%s%ld", e ? ", " : "[", (long)l->load[2 * e]);
        fprintf(f, "%s, \"dropped\": ", l->load ? "]" : "null");
        for (e = 0; l->load != NULL && e < l->experts; e++)
            fprintf(f, "%s%ld", e ? ", " : "[", (long)l->load[2 * e + 1]);
        fprintf(f, "%s}", l->load ? "]" : "null");
    }
    fprintf(f, "%s],\n", r->n_moe ? "\n  " : "");
    fprintf(f, "  \"moe_time_ms\": {\"gate\": ");
    jnum(f, r->moe_time->gate);
    fprintf(f, ", \"dispatch\": ");
    jnum(f, r->moe_time->dispatch);
    fprintf(f, ", \"experts\": ");
    jnum(f, r->moe_time->experts);
    fprintf(f, ", \"combine\": ");
    jnum(f, r->moe_time->combine);
    fprintf(f, ", \"all_nodes\": ");
    jnum(f, r->moe_time->all);
    fprintf(f, "},\n");
}

static void
json_nodes(FILE *f, const struct run_report *r)
{
    int i, n = 0;

    fprintf(f, "  \"nodes\": [");
    for (i = 0; i < r->stats->n_nodes; i++) {
        struct smlp_node_profile p;

        if (smlp_session_node_profile(r->session, i, &p) != SMLP_OK)
            continue;
        fprintf(f, "%s\n    {\"name\": ", n++ ? "," : "");
        jstr(f, p.name);
        fprintf(f, ", \"op\": ");
        jstr(f, p.op);
        fprintf(f, ", \"macs\": %llu, \"macs_computed\": %llu, "
                   "\"start_us\": ",
                (unsigned long long)p.macs,
                (unsigned long long)moe_node_macs(r->session, i, r->moe,
                                                  r->n_moe));
        jnum(f, p.start_us);
        fprintf(f, ", \"end_us\": ");
        jnum(f, p.end_us);
        fprintf(f, ", \"thread\": %d}", p.thread);
    }
    fprintf(f, "\n  ],\n");
}

static void
json_outputs(FILE *f, const struct run_report *r)
{
    int i, n = smlp_session_tensor_count(r->session, 4), d, done = 0;

    fprintf(f, "  \"outputs\": [");
    for (i = 0; i < n; i++) {
        const char *name = smlp_session_tensor_name(r->session, 4, i);
        struct smlp_tensor t;

        if (name == NULL ||
            smlp_session_tensor(r->session, name, &t) != SMLP_OK)
            continue;
        fprintf(f, "%s\n    {\"name\": ", done++ ? "," : "");
        jstr(f, name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": [",
                t.dtype == SMLP_DTYPE_F32 ? "f32" : "i32");
        for (d = 0; d < t.rank; d++)
            fprintf(f, "%s%lld", d ? ", " : "", (long long)t.shape[d]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n");
}

static void
json_body(FILE *f, const struct run_report *r)
{
    const struct smlp_session_stats *st = r->stats;
    struct smlp_device_stats ds;
    uint64_t done = 0;
    double gflops;
    int i;

    for (i = 0; i < st->n_nodes; i++)
        done += moe_node_macs(r->session, i, r->moe, r->n_moe);
    gflops = r->median_ms > 0 ? 2.0 * (double)done / (r->median_ms * 1e6)
                              : 0.0;

    fprintf(f, "{\n  \"graph\": ");
    jstr(f, smlp_graph_name(r->graph));
    fprintf(f, ",\n  \"file\": ");
    jstr(f, r->graph_file);
    fprintf(f, ",\n  \"smlp_version\": ");
    jstr(f, smlp_version_string());
    fprintf(f, ",\n  \"device\": ");
    jstr(f, r->device);
    fprintf(f, ",\n  \"training\": %s,\n", r->training ? "true" : "false");
    fprintf(f, "  \"batch\": %lld,\n  \"n_nodes\": %d,\n",
            (long long)st->batch, st->n_nodes);
    fprintf(f, "  \"threads\": {\"inter_op\": %d, \"intra_op\": %d},\n",
            st->inter_op, st->intra_op);
    fprintf(f, "  \"params\": %llu,\n  \"param_bytes\": %llu,\n",
            (unsigned long long)st->params,
            (unsigned long long)st->param_bytes);
    fprintf(f, "  \"macs_per_batch\": %llu,\n  \"macs_per_image\": ",
            (unsigned long long)st->macs);
    jnum(f, (double)st->macs / (double)st->batch);
    fprintf(f, ",\n  \"macs_computed_per_batch\": %llu",
            (unsigned long long)done);
    fprintf(f, ",\n  \"time_ms\": {\"median\": ");
    jnum(f, r->median_ms);
    fprintf(f, ", \"min\": ");
    jnum(f, r->times_ms[0]);
    fprintf(f, ", \"max\": ");
    jnum(f, r->times_ms[r->repeat - 1]);
    fprintf(f, ", \"runs\": [");
    for (i = 0; i < r->repeat; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jnum(f, r->times_ms[i]);
    }
    fprintf(f, "]},\n  \"images_per_s\": ");
    jnum(f, r->median_ms > 0 ? (double)st->batch * 1e3 / r->median_ms : 0);
    fprintf(f, ",\n  \"gflops\": ");
    jnum(f, gflops);
    fprintf(f, ",\n  \"memory\": {\"arena_bytes\": %llu, "
               "\"lower_bound_bytes\": %llu",
            (unsigned long long)st->arena_bytes,
            (unsigned long long)st->lower_bound);
    ds.size = sizeof(ds);
    if (smlp_session_get_device_stats(r->session, &ds) == SMLP_OK &&
        ds.device_nodes > 0)
        fprintf(f, ", \"device\": {\"nodes\": %d, \"arena_bytes\": %llu, "
                   "\"lower_bound_bytes\": %llu, \"param_bytes\": %llu}",
                ds.device_nodes, (unsigned long long)ds.arena_bytes,
                (unsigned long long)ds.lower_bound,
                (unsigned long long)ds.param_bytes);
    fprintf(f, "},\n");
    json_moe(f, r);
    json_nodes(f, r);
    json_outputs(f, r);
    fprintf(f, "}\n");
}

/* json_body as smlp__atomic_file_fill's writer. */
static int
fill_json(FILE *f, void *arg)
{
    json_body(f, arg);
    return ferror(f) != 0 ? -1 : 0;
}

/* Written through smlp__atomic_file (runtime/atomic_file.h): replaced
 * atomically, a device or FIFO written in place, a link's target
 * replaced. */
int
run_report_write_json(const char *path, const struct run_report *r)
{
    char err[4096 + 256];

    if (smlp__atomic_file_fill(path, fill_json, (void *)r, err,
                               sizeof(err)) != SMLP_OK) {
        fprintf(stderr, "smlp-run: --json %s\n", err);
        return -1;
    }
    return 0;
}

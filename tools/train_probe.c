/*
 * train_probe.c - the frozen backbone of a linear probe, run as inference
 * runs it (train_head.h, train_probe_gates).
 *
 * The probe's session trains (the head needs a backward), and a training
 * session would route with gate noise, at the training capacity factor,
 * and compute aux losses that reach only frozen router weights.  The
 * linear-probe protocol (MoCo v3's main_lincls: model.eval() on the
 * frozen model) reads the features the model gives at inference, so each
 * gate node of the probe's graph gets, in memory:
 *
 *   capacity_factor = its eval_capacity_factor (when it has one; the op's
 *                     inference default is capacity_factor itself);
 *   noise_std 0, aux "none" and aux_weight 0  (learned gates;
 *                     moe.gate.hash has none of them; aux_weight 0 also
 *                     drops per_image's superclass cross-entropy, which
 *                     aux "none" keeps).
 *
 * The evaluation session uses the graph as given, in inference: the same
 * routing, so the probe trains on the features it is tested on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"
#include "smlp.h"
#include "train_head.h"

/* Sets float attribute `name`; -1 when out of memory. */
static int
set_float(struct smlp__node_ir *n, const char *name, double v)
{
    struct smlp__attr_ir *a = smlp__graph_ir_node_attr(n, name);

    if (a == NULL)
        return -1;
    a->type = SMLP_ATTR_FLOAT;
    a->f = v;
    return 0;
}

/* Sets string attribute `name`; -1 when out of memory. */
static int
set_string(struct smlp__node_ir *n, const char *name, const char *v)
{
    struct smlp__attr_ir *a = smlp__graph_ir_node_attr(n, name);
    char *s;

    if (a == NULL || (s = strdup(v)) == NULL)
        return -1;
    free(a->s);
    a->type = SMLP_ATTR_STRING;
    a->s = s;
    return 0;
}

/* The float value of attribute `name` of node n in *v: 1 when the node
 * has it as a float, else 0. */
static int
get_float(const struct smlp__node_ir *n, const char *name, double *v)
{
    int32_t i;

    for (i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0 &&
            n->attrs[i].type == SMLP_ATTR_FLOAT) {
            *v = n->attrs[i].f;
            return 1;
        }
    return 0;
}

int
train_probe_gates(struct smlp__graph_ir *ir, struct train_head_info *info)
{
    int32_t i;

    for (i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];
        double ecf;

        if (strcmp(n->op, "norm.batch_norm") == 0 &&
            info->probe_bn[0] == '\0')
            snprintf(info->probe_bn, sizeof(info->probe_bn), "%s", n->name);
        if (strncmp(n->op, "moe.gate.", 9) != 0)
            continue;
        info->probe_gates++;
        if (get_float(n, "eval_capacity_factor", &ecf) &&
            set_float(n, "capacity_factor", ecf) != 0)
            return -1;
        if (strcmp(n->op, "moe.gate.hash") == 0)
            continue;
        if (set_float(n, "noise_std", 0.0) != 0 ||
            set_string(n, "aux", "none") != 0 ||
            set_float(n, "aux_weight", 0.0) != 0)
            return -1;
    }
    return 0;
}

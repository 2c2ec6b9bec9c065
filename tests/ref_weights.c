/*
 * ref_weights - writes the PyTorch reference's parameters for a graph
 * (tests/refspec.h) to a safetensors file, for the shell tests:
 *     ref_weights REFERENCE.safetensors GRAPH.fbs OUT.safetensors
 * Loads plugins from SMLP_PLUGIN_PATH like every test.  Exit 0 or 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "refspec.h"

int
main(int argc, char **argv)
{
    struct smlp_error e;
    smlp_registry_t *reg;
    smlp_graph_t *g;
    char err[1024];
    int rc;

    if (argc != 4) {
        fprintf(stderr,
                "usage: ref_weights REFERENCE.safetensors GRAPH.fbs OUT\n");
        return 1;
    }
    reg = smlp_registry_create(NULL, &e);
    if (reg == NULL) {
        fprintf(stderr, "ref_weights: %s\n", e.msg);
        return 1;
    }
    g = smlp_graph_load(argv[2], &e);
    if (g == NULL) {
        fprintf(stderr, "ref_weights: %s\n", e.msg);
        smlp_registry_destroy(reg);
        return 1;
    }
    rc = refspec_write_weights(g, reg, argv[1], argv[3], err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "ref_weights: %s\n", err);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    return rc == 0 ? 0 : 1;
}

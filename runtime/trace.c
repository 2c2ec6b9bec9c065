/*
 * trace.c - the Chrome/Perfetto trace of a session's last run (JSON
 * "traceEvents" with one complete event per node), written atomically.
 * A backward run after it adds one event per node backward, named
 * "NODE (backward)", on the same clock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "internal.h"

/* The characters of s, escaped for a JSON string. */
static void
put_json_chars(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

static void
put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    put_json_chars(f, s);
    fputc('"', f);
}

/*
 * Written through smlp__atomic_file (atomic_file.h): replaced atomically,
 * a device or FIFO written in place, a link's target replaced.  Messages
 * read "cannot write trace: PATH: why".
 */
SMLP_API int
smlp_session_write_trace(smlp_session_t *s, const char *path)
{
    struct smlp__atomic_file af;
    char err[SMLP__ERRLEN];
    FILE *f;
    int i, rc;

    if (s == NULL)
        return SMLP_EINVAL;
    if (path == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_session_write_trace: no path "
                                  "(NULL)");
    rc = smlp__atomic_file_open(&af, path, err, sizeof(err));
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "cannot write trace: %s", err);
    f = smlp__atomic_file_stream(&af, err, sizeof(err));
    if (f == NULL) {
        smlp__atomic_file_abort(&af);
        return smlp__session_fail(s, SMLP_ENOMEM, "cannot write trace: %s",
                                  err);
    }
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, "
               "\"args\": {\"name\": ");
    put_json_string(f, s->graph->ir->name);
    fprintf(f, "}}");
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp_node_profile p;

        smlp_session_node_profile(s, i, &p);
        fprintf(f, ",\n{\"name\": ");
        put_json_string(f, p.name);
        fprintf(f, ", \"cat\": ");
        put_json_string(f, p.op);
        fprintf(f,
                ", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, "
                "\"dur\": %.3f, \"args\": {\"macs\": %llu}}",
                p.thread, p.start_us, p.end_us - p.start_us,
                (unsigned long long)p.macs);
    }
    for (i = 0; s->ag != NULL && i < s->ag->n_bwd; i++) {
        const struct smlp__node_rt *n = &s->nodes[s->ag->border[i]];

        if (n->bt1 <= 0)
            continue; /* no backward since the last run */
        fprintf(f, ",\n{\"name\": \"");
        put_json_chars(f, n->node.ir->name);
        fprintf(f, " (backward)\", \"cat\": ");
        put_json_string(f, n->node.ir->op);
        fprintf(f,
                ", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, "
                "\"dur\": %.3f}",
                n->bthread, n->bt0 - s->run_t0, n->bt1 - n->bt0);
    }
    fprintf(f, "\n]}\n");
    rc = smlp__atomic_file_commit(&af, err, sizeof(err));
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "cannot write trace: %s", err);
    return SMLP_OK;
}

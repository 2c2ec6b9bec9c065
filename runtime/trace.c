/*
 * trace.c - the Chrome/Perfetto trace of a session's last run (JSON
 * "traceEvents" with one complete event per node), written atomically.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void
put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

SMLP_API int
smlp_session_write_trace(smlp_session_t *s, const char *path)
{
    size_t len = strlen(path) + 16;
    char *tmp = smlp__malloc(len);
    FILE *f;
    int fd, i, rc = SMLP_OK;

    if (tmp == NULL)
        return smlp__session_fail(s, SMLP_ENOMEM, "out of memory");
    snprintf(tmp, len, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        rc = smlp__session_fail(s, SMLP_EIO, "%s: cannot write trace: %s",
                                path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        smlp__free(tmp);
        return rc;
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
    fprintf(f, "\n]}\n");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = smlp__session_fail(s, SMLP_EIO, "%s: cannot write trace: %s",
                                path, strerror(errno));
        fclose(f);
        unlink(tmp);
    } else if (fclose(f) != 0 || rename(tmp, path) != 0) {
        rc = smlp__session_fail(s, SMLP_EIO, "%s: cannot write trace: %s",
                                path, strerror(errno));
        unlink(tmp);
    }
    smlp__free(tmp);
    return rc;
}

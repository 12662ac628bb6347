/* fuzz_task_response.c: libFuzzer target for the two answers about a
 * truncate's task (consumer/es_response.c): the task id of a started
 * _delete_by_query, which goes into a URL path, and GET /_tasks/<id>. On
 * any input no crash, no leak, an id only of the characters a path may
 * take, and a reason that is a terminated string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256], id[ES_TASK_ID_MAX + 1];
    if (es_task_id_parse((const char *)data, size, id, err, sizeof err) == 0) {
        size_t n = strlen(id);
        if (n == 0 || n > ES_TASK_ID_MAX ||
            strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:") != n)
            abort();
    }
    es_task_status st;
    if (es_task_parse((const char *)data, size, &st, err, sizeof err) == 0) {
        if (memchr(st.reason, '\0', sizeof st.reason) == NULL)
            abort();
        if (st.state != ES_TASK_FAILED && st.reason[0] != '\0')
            abort();
    }
    return 0;
}

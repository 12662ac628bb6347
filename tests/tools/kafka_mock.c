/* kafka_mock: librdkafka's mock Kafka cluster (one broker) in a process of its
 * own, for integration tests that need a fault a real broker cannot be asked
 * for on cue, e.g. a partition without a leader while the rest of the
 * cluster (group coordinator, other topics) works.
 *
 * Prints its bootstrap address on the first line of stdout, then reads
 * commands from stdin, one a line, answering "ok" or "error <reason>":
 *   topic NAME PARTITIONS          create a topic
 *   leader NAME PARTITION BROKER   set a partition's leader (-1: none, 1: the broker)
 * Ends at the end of stdin. */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void answer(rd_kafka_resp_err_t err)
{
    if (err)
        printf("error %s\n", rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
}

int main(void)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka_mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "kafka_mock: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[512], name[256];
    int a, b;
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "topic %255s %d", name, &a) == 2)
            answer(rd_kafka_mock_topic_create(mc, name, a, 1));
        else if (sscanf(line, "leader %255s %d %d", name, &a, &b) == 3)
            answer(rd_kafka_mock_partition_set_leader(mc, name, a, b));
        else {
            printf("error unknown command\n");
            fflush(stdout);
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}

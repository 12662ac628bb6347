"""An HTTPS front for a real OpenSearch/Elasticsearch node that speaks only plain HTTP
(the test nodes have no TLS): TLS is terminated here with a test certificate, HTTP
basic authentication is required, and every authenticated request is passed on to the
node unchanged. Standard library only; built on tests/httpproxy.py.

    with TlsProxy(engine.url, cert="server.pem", key="server.key",
                  user="pgcdc", password="...") as proxy:
        ... point the consumer at proxy.url ("https://127.0.0.1:N") ...
        proxy.handshake_errors   # TLS handshakes that failed, with the reason
        proxy.unauthorized       # requests answered 401 (no or wrong credentials)
        proxy.forwarded          # requests passed on to the node

The handshake runs in the connection's own thread (HttpProxy.accept), so a client that
stalls or refuses the certificate never blocks the others.
"""

import base64
import hmac
import ssl

from httpproxy import HttpProxy

UNAUTHORIZED = (b'{"error":{"type":"security_exception","reason":'
                b'"missing or wrong authentication credentials"},"status":401}')


class TlsProxy(HttpProxy):
    scheme = "https"
    drop_request_headers = frozenset({"authorization"})  # checked here, not by the node

    def __init__(self, upstream, cert, key, user, password):
        super().__init__(upstream)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.handshake_errors = []
        self.unauthorized = 0
        self.forwarded = 0

    def accept(self, request):
        try:
            return self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.handshake_errors.append(str(e))
            return None

    def handle(self, method, path, headers, body):
        given = headers.get("Authorization") or ""
        if not hmac.compare_digest(given.encode(), self.expected_auth.encode()):
            with self.lock:
                self.unauthorized += 1
            return (401, [("WWW-Authenticate", 'Basic realm="pgcdc-test"'),
                          ("Content-Type", "application/json")], UNAUTHORIZED)
        answer = self.forward(method, path, headers, body)
        with self.lock:
            self.forwarded += 1
        return answer

"""A small HTTP proxy in front of a real OpenSearch/Elasticsearch node that injects the
faults a real server cannot be asked for on cue. Standard library only.

    with FaultProxy(engine.url, reject_ids={"2", "5"}, reject_requests=2) as proxy:
        ... point the consumer at proxy.url ...
        proxy.rejected_items   # how many items were answered with a fake 429

For the first `reject_requests` POST .../_bulk requests that hold an item whose _id is
in `reject_ids`, those items are NOT forwarded: the rest of the body goes to the real
node, and the answer gets, at the refused items' places, a 429
es_rejected_execution_exception item (and "errors": true), as a node under write
pressure answers. So an item that ends up in the index was sent again by the client.
Every other request (and every later _bulk) passes through untouched.

`fail_status` with `fail_requests`: the first `fail_requests` _bulk requests are not
forwarded at all but answered as a whole with that HTTP status (429, 503, 401, ...) and
an engine-like error body.

`delay_s` delays every _bulk answer (to catch a client in the middle of a batch);
`bulk_requests` counts the _bulk requests seen; `authorizations` lists the
Authorization headers of every request (None where there was none).
"""

import json
import urllib.parse

from httpproxy import HttpProxy

BODY_ACTIONS = {"index", "create", "update"}


def _split_bulk(body):
    """The items of a _bulk body: list of (action, meta, lines), lines with their '\\n'."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    items = []
    i = 0
    while i < len(lines):
        action_line = json.loads(lines[i])
        (action, meta), = action_line.items()
        n = 2 if action in BODY_ACTIONS else 1
        items.append((action, meta, [ln + b"\n" for ln in lines[i:i + n]]))
        i += n
    return items


def _rejected_item(action, meta):
    return {action: {
        "_index": meta.get("_index"), "_id": meta.get("_id"), "status": 429,
        "error": {"type": "es_rejected_execution_exception",
                  "reason": "rejected execution of coordinating operation "
                            "[injected by tests/faultproxy.py]"}}}


class FaultProxy(HttpProxy):
    def __init__(self, upstream, reject_ids=(), reject_requests=0, delay_s=0.0,
                 fail_status=None, fail_requests=0):
        super().__init__(upstream)
        self.reject_ids = set(reject_ids)
        self.reject_requests = reject_requests
        self.delay_s = delay_s
        self.fail_status = fail_status
        self.fail_requests = fail_requests
        self.failed_requests = 0
        self.authorizations = []
        self.bulk_requests = 0
        self.faulty_requests = 0
        self.rejected_items = 0

    def handle(self, method, path, headers, body):
        with self.lock:
            self.authorizations.append(headers.get("Authorization"))
        is_bulk = method == "POST" and urllib.parse.urlsplit(path).path.endswith("/_bulk")
        if not is_bulk:
            return self.forward(method, path, headers, body)
        with self.lock:
            self.bulk_requests += 1
        if self.delay_s:
            self.stopped.wait(self.delay_s)
        with self.lock:
            fail = self.fail_status and self.failed_requests < self.fail_requests
            if fail:
                self.failed_requests += 1
        if fail:
            error = {"error": {"type": "injected_failure",
                               "reason": "whole request failed [injected by tests/faultproxy.py]"},
                     "status": self.fail_status}
            return (self.fail_status, [("Content-Type", "application/json; charset=UTF-8")],
                    json.dumps(error).encode())
        items = _split_bulk(body)
        chosen = [meta.get("_id") in self.reject_ids for _, meta, _ in items]
        with self.lock:
            inject = any(chosen) and self.faulty_requests < self.reject_requests
            if inject:
                self.faulty_requests += 1
                self.rejected_items += sum(chosen)
        if not inject:
            return self.forward(method, path, headers, body)
        kept = b"".join(b"".join(lines) for (_, _, lines), c in zip(items, chosen) if not c)
        upstream_items = []
        took = 0
        resp_headers = [("Content-Type", "application/json; charset=UTF-8")]
        if kept:
            status, resp_headers, data = self.forward(method, path, headers, kept)
            if status != 200:
                return status, resp_headers, data
            answer = json.loads(data)
            upstream_items = answer["items"]
            took = answer.get("took", 0)
        merged = []
        it = iter(upstream_items)
        for (action, meta, _), c in zip(items, chosen):
            merged.append(_rejected_item(action, meta) if c else next(it))
        data = json.dumps({"took": took, "errors": True, "items": merged}).encode()
        return 200, resp_headers, data

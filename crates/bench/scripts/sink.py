# Part of crates/bench/scripts/callgrind.sh: a trace sink answering 200 to /…/traces, 404 otherwise.
#   sink.py PORT [--production]
# With --production it plays a Datadog Agent in production, as the benchmark's production sink
# (crates/bench/src/sink.rs): GET /info lists /v0.6/stats and allows client_drop_p0s, trace posts
# are answered with rate_by_service 1% for notes, calendar and the default key, and /v0.6/stats
# is answered 200. Every request is logged to stderr as "METHOD PATH BYTES".
import http.server, json, sys, socketserver
production = "--production" in sys.argv[2:]
INFO = json.dumps({
    "version": "7.60.0",
    "endpoints": ["/v0.3/traces", "/v0.4/traces", "/v0.5/traces", "/v0.6/stats", "/info"],
    "client_drop_p0s": True,
    "span_meta_structs": True,
    "peer_tags": ["_dd.base_service", "db.instance", "db.system", "http.host", "net.peer.name",
                  "out.host", "peer.hostname", "peer.service", "server.address"],
    "config": {"default_env": "none", "statsd_port": 8125},
}).encode()
RATES = json.dumps({"rate_by_service": {
    "service:notes,env:bench": 0.01, "service:calendar,env:bench": 0.01, "service:,env:": 0.01,
}}).encode() if production else b'{"rate_by_service":{}}'
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _ok(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        path = self.path.split("?")[0]
        if path.endswith("/traces"):
            status, body = 200, RATES
        elif production and path == "/info" and self.command == "GET":
            status, body = 200, INFO
        elif production and path == "/v0.6/stats":
            status, body = 200, b"OK"
        else:
            status, body = 404, b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
        sys.stderr.write(f"{self.command} {self.path} {n}\n"); sys.stderr.flush()
    do_POST = do_PUT = do_GET = _ok
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()

# Part of crates/bench/scripts/callgrind.sh: a trace sink answering 200 to /…/traces, 404 otherwise.
# Minimal trace sink: answers every request 200 with an empty rate_by_service.
import http.server, sys, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _ok(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        body = b'{"rate_by_service":{}}'
        self.send_response(200 if self.path.endswith("/traces") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
        sys.stderr.write(f"{self.command} {self.path} {n}\n"); sys.stderr.flush()
    do_POST = do_PUT = do_GET = _ok
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()

# Part of crates/bench/scripts/callgrind.sh.
# Sequential keep-alive requests: load.py PORT PATH N [METHOD (GET)]; prints how many were
# answered 2xx. LOAD_HEADERS="name: value|name: value" adds headers to every request (for
# example an incoming trace context).
import http.client, os, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
method = sys.argv[4] if len(sys.argv) > 4 else "GET"
headers = dict(
    (k.strip(), v.strip())
    for k, v in (h.split(":", 1) for h in os.environ.get("LOAD_HEADERS", "").split("|") if h.strip())
)
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(n):
    c.request(method, path, headers=headers); r = c.getresponse(); r.read(); ok += 200 <= r.status < 300
print(ok)

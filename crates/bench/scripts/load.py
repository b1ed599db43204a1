# Part of crates/bench/scripts/callgrind.sh.
# Sequential keep-alive requests: load.py PORT PATH N [METHOD (GET)]
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
method = sys.argv[4] if len(sys.argv) > 4 else "GET"
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(n):
    c.request(method, path); r = c.getresponse(); r.read(); ok += r.status == 200
print(ok)

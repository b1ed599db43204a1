# Part of crates/bench/scripts/callgrind.sh.
# Sequential keep-alive GETs: load.py PORT PATH N
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for _ in range(n):
    c.request("GET", path); r = c.getresponse(); r.read(); ok += r.status == 200
print(ok)

"""The upstream zones of the recursion and peer tests: every kind of answer a relay must keep
intact."""

BIG_TXT = ['"%s"' % ("%02d" % i * 100) for i in range(12)]  # 12 x 200 bytes: > 1232 in all
EXAMPLE_ORG = """$ORIGIN example.org.
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 60
@        IN NS  ns1
ns1      IN A   192.0.2.53
www      IN A   192.0.2.1
www      IN AAAA 2001:db8::1
txt      IN TXT "hello" "world"
alias    IN CNAME alias2
alias2   IN CNAME www
_http._tcp IN SRV 0 5 8080 www
""" + "".join("big IN TXT %s\n" % t for t in BIG_TXT)

# A root zone on the same upstream, so that unknown TLDs get NXDOMAIN (as from the Internet).
ROOT_ZONE = """$TTL 300
.        IN SOA a.root-servers.net. hostmaster.root. 1 3600 600 86400 60
.        IN NS  a.root-servers.net.
a.root-servers.net. IN A 192.0.2.53
"""

REVERSE_10 = """$ORIGIN 10.in-addr.arpa.
$TTL 300
@        IN SOA ns1.example.org. hostmaster.example.org. 1 3600 600 86400 60
@        IN NS  ns1.example.org.
5.0.0    IN PTR host5.example.org.
"""


def upstream_zones():
    return {"example.org": EXAMPLE_ORG, ".": ROOT_ZONE, "10.in-addr.arpa": REVERSE_10}

#!/usr/bin/env python3
"""Writes fixture.json, the one catalog every DNS vector assumes (README.md describes it).

fixture.json is the source of truth; this script only records how it was made. Run it from
anywhere: python3 rfc-vectors/dns/make_fixture.py
"""
import json
import os

DC = "dc1"
bodies = []


def node_addr(i):
    return "2001:db8::20" if i == 20 else "10.0.0.%d" % i


def node_body(name, addr, meta=None, checks=None):
    b = {"Datacenter": DC, "Node": name, "Address": addr}
    if meta:
        b["NodeMeta"] = meta
    if checks:
        b["Checks"] = checks
    return b


def service_body(node, addr, svc, checks=None):
    b = {"Datacenter": DC, "Node": node, "Address": addr, "SkipNodeUpdate": True, "Service": svc}
    if checks:
        b["Checks"] = checks
    return b


# nodes: node1..node19 at 10.0.0.N, node20 IPv6, ext1 with a hostname address, server1 (the
# agent's own node in the integration tests) running the "consul" service
meta = {
    1: {"rack": "r1", "env": "prod"},
    2: {"rfc1035-spf": "v=spf1 -all"},
}
for i in range(1, 21):
    checks = None
    if i == 12:
        checks = [{"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "critical"}]
    bodies.append(node_body("node%d" % i, node_addr(i), meta.get(i), checks))
bodies.append(node_body("ext1", "ext1.example.net"))
bodies.append(node_body("server1", "127.0.0.1",
                        checks=[{"CheckID": "serfHealth", "Name": "Serf Health Status",
                                 "Status": "passing"}]))
bodies.append(service_body("server1", "127.0.0.1",
                           {"ID": "consul", "Service": "consul", "Port": 8300}))


def wrap(i):
    return (i - 1) % 20 + 1


# svcN: three instances on nodes 3N-2, 3N-1, 3N (wrapping), port 20000+N
for n in range(1, 11):
    for k, letter in enumerate("abc"):
        node = wrap(3 * n - 2 + k)
        svc = {"ID": "svc%d-%s" % (n, letter), "Service": "svc%d" % n, "Port": 20000 + n}
        checks = None
        if n == 1:
            svc["Tags"] = [["primary", "v1"], ["v1"], ["v2"]][k]
        if n == 2:
            svc["Weights"] = {"Passing": 10, "Warning": 2}
            if letter == "b":
                checks = [{"CheckID": "svc2-b-check", "Name": "svc2 load", "Status": "warning",
                           "ServiceID": "svc2-b"}]
        if n == 3 and letter == "b":
            checks = [{"CheckID": "svc3-b-check", "Name": "svc3 down", "Status": "critical",
                       "ServiceID": "svc3-b"}]
        if n == 4:
            svc["Address"] = "svc4-%s.example.com" % letter
        if n == 5 and letter == "a":
            svc["Address"] = "192.168.5.13"
        bodies.append(service_body("node%d" % node, node_addr(node), svc, checks))
    if n == 6:  # a second instance on node16, another port: A deduplicated, SRV not
        bodies.append(service_body("node16", node_addr(16),
                                   {"ID": "svc6-d", "Service": "svc6", "Port": 20106}))

# web: 8 instances on node1..node8 (SRV answers fit in 512 bytes, their glue does not)
for i in range(1, 9):
    bodies.append(service_body("node%d" % i, node_addr(i),
                               {"ID": "web-%d" % i, "Service": "web", "Port": 8080}))

# big: 100 instances with their own addresses 10.1.0.1..100, ten on each of node1..node10
for i in range(1, 101):
    node = (i - 1) % 10 + 1
    bodies.append(service_body("node%d" % node, node_addr(node),
                               {"ID": "big-%d" % i, "Service": "big", "Port": 9000,
                                "Address": "10.1.0.%d" % i}))

# down: its only instance is critical
bodies.append(service_body("node19", node_addr(19), {"ID": "down", "Service": "down", "Port": 1},
                           [{"CheckID": "down-check", "Name": "down", "Status": "critical",
                             "ServiceID": "down"}]))

# mixed: one instance at its node's IP, one at a hostname
bodies.append(service_body("node13", node_addr(13),
                           {"ID": "mixed-a", "Service": "mixed", "Port": 7000}))
bodies.append(service_body("node14", node_addr(14),
                           {"ID": "mixed-b", "Service": "mixed", "Port": 7000,
                            "Address": "mixed.example.com"}))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture.json")
with open(out, "w") as f:
    json.dump(bodies, f, indent=1)
    f.write("\n")
print("wrote %s: %d registrations" % (out, len(bodies)))

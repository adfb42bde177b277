#!/usr/bin/python3
"""Helpers of tests/bench/dns.sh (DNS benchmark: Herald vs NSD 4 vs Knot 3).

    dns_bench.py gen DIR --nodes N --services S [--inst 3] [--missing M] [--queries Q]
        writes DIR/data.json (the parameters), DIR/consul.zone (the same data as a zone file for
        NSD and Knot) and DIR/queries.txt (dnsperf input: 50% A, 40% SRV, 10% NXDOMAIN)
    dns_bench.py load DIR HOST:PORT [--conc C] [--procs P]
        registers every instance of DIR's data set through PUT /v1/catalog/register (C keep-alive
        connections over P processes); prints {"instances", "seconds", "per_s", "errors"}
    dns_bench.py check DIR NAME=IP:PORT...
        asks every server the same sample of the query file's names (and one A, one SRV, one
        NXDOMAIN, printed side by side) and fails unless rcode, answer RRsets and additional
        RRsets match (order, TTL and the SOA serial aside); prints a JSON summary last
    dns_bench.py measure OUT.jsonl KEY=VAL... --server-pids "P..." [--server-addr IP:PORT]
                         [--ignore-pids "P..."] [--max-other CORES] [--verbose-latency]
                         -- dnsperf ARGS...
        runs dnsperf, takes the server's utime+stime (process trees of --server-pids) before
        and after, the CPU every other user process (not --ignore-pids) and the kernel
        threads used meanwhile, dnsperf's own CPU, the UDP drops at the server's socket,
        parses dnsperf's statistics (and with -v each query's latency: p50/p90/p99/p99.9) and
        appends one JSON line (KEY=VAL fields included) to OUT.jsonl; with --max-other, a
        run in which other user processes took more than CORES on average goes to
        OUT.jsonl.disturbed instead and the exit status is 3
    dns_bench.py tree-ticks PID...   utime+stime ticks of the process trees
    dns_bench.py tree-pids PID...    the pids of the process trees
    dns_bench.py mem PID...          {"rss_kb", "anon_kb", "file_kb", "hwm_kb"} over the trees
    dns_bench.py report DIR [--record RESULTS.md]
"""
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

import cpu
import report
from report import med

HZ = os.sysconf("SC_CLK_TCK")


# ---- the data set ------------------------------------------------------------------------

def node_addr(k):
    n = 0x0A800000 + k + 1  # 10.128.0.1, ...
    return "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def instances(p):
    """(service index, instance index, node index, port) of every instance: service i has its
    instances on nodes (3i + j) mod N, all distinct while N >= inst."""
    for i in range(p["services"]):
        for j in range(p["inst"]):
            yield i, j, (i * p["inst"] + j) % p["nodes"], 20000 + i % 40000


def gen(d, args):
    p = {"nodes": int(args["--nodes"]), "services": int(args["--services"]),
         "inst": int(args.get("--inst", 3)), "missing": int(args.get("--missing", 1000)),
         "queries": int(args.get("--queries", 10000)), "seed": int(args.get("--seed", 1))}
    assert p["nodes"] >= p["inst"]
    p["instances"] = p["services"] * p["inst"]
    os.makedirs(d, exist_ok=True)
    svc_nodes = {}
    with open(os.path.join(d, "consul.zone"), "w") as f:
        # TTL 0 and the SOA timers as Herald answers them (dns_config defaults).
        f.write("$ORIGIN consul.\n$TTL 0\n")
        f.write("@ SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0\n")
        # The NS name is outside the zone: NSD (no minimal-responses, which would also drop the
        # SRV targets from Additional) then adds the NS RRset to Authority but no glue.
        f.write("@ NS ns.example.\n")
        for i, j, k, port in instances(p):
            svc_nodes.setdefault(i, []).append((k, port))
        for i in range(p["services"]):
            for k, _ in svc_nodes[i]:
                f.write("svc%d.service A %s\n" % (i, node_addr(k)))
            for k, port in svc_nodes[i]:
                f.write("_svc%d._tcp.service SRV 1 1 %d node%d.node.dc1.consul.\n" % (i, port, k))
        for k in range(p["nodes"]):
            f.write("node%d.node.dc1 A %s\n" % (k, node_addr(k)))
    # Groups of ten: 5 A (4 services, 1 node), 4 SRV, 1 NXDOMAIN; names drawn at random.
    rnd = random.Random(p["seed"])
    qs = []
    for _ in range(p["queries"] // 10):
        for _ in range(4):
            qs.append("svc%d.service.consul A" % rnd.randrange(p["services"]))
        qs.append("node%d.node.dc1.consul A" % rnd.randrange(p["nodes"]))
        for _ in range(4):
            qs.append("_svc%d._tcp.service.consul SRV" % rnd.randrange(p["services"]))
        qs.append("missing%d.service.consul A" % rnd.randrange(p["missing"]))
    with open(os.path.join(d, "queries.txt"), "w") as f:
        f.write("\n".join(qs) + "\n")
    p["distinct_names"] = len(set(qs))
    p["zone_rrs"] = 2 + 2 * p["instances"] + p["nodes"]
    with open(os.path.join(d, "data.json"), "w") as f:
        json.dump(p, f)
    print(json.dumps(p))


# ---- loading into Herald -----------------------------------------------------------------

def load_worker(host, port, bodies, out):
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=60)
    errors = 0
    for n, b in enumerate(bodies):
        if errors > 100:  # the agent is gone or refuses: count the rest as failed
            errors += len(bodies) - n
            break
        for _ in range(3):
            try:
                conn.request("PUT", "/v1/catalog/register", body=b,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200 and body.strip() == b"true":
                    break
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
        else:
            errors += 1
    conn.close()
    out.append(errors)


def load_proc(host, port, bodies, conc, q):
    import threading
    out = []
    ts = [threading.Thread(target=load_worker, args=(host, port, bodies[t::conc], out))
          for t in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(sum(out))


def load(d, hostport, args):
    import multiprocessing as mp
    with open(os.path.join(d, "data.json")) as f:
        p = json.load(f)
    host, port = hostport.rsplit(":", 1)
    conc = int(args.get("--conc", 32))
    procs = int(args.get("--procs", 2))
    bodies = [json.dumps({"Datacenter": "dc1", "Node": "node%d" % k, "Address": node_addr(k),
                          "Service": {"ID": "svc%d-%d" % (i, j), "Service": "svc%d" % i,
                                      "Port": port_}}).encode()
              for i, j, k, port_ in instances(p)]
    t0 = time.monotonic()
    q = mp.Queue()
    ps = [mp.Process(target=load_proc, args=(host, int(port), bodies[n::procs],
                                             max(1, conc // procs), q)) for n in range(procs)]
    for x in ps:
        x.start()
    errors = sum(q.get() for _ in ps)
    for x in ps:
        x.join()
    secs = time.monotonic() - t0
    print(json.dumps({"instances": len(bodies), "seconds": round(secs, 2),
                      "per_s": round(len(bodies) / secs), "errors": errors,
                      "connections": max(1, conc // procs) * procs, "processes": procs}))
    sys.exit(1 if errors else 0)


# ---- checking that the servers answer the same -------------------------------------------

def ask(server, name, rtype):
    import dns.message
    import dns.query
    ip, port = server.rsplit(":", 1)
    q = dns.message.make_query(name, rtype, use_edns=0, payload=4096)
    return dns.query.udp(q, ip, port=int(port), timeout=3)


def shape(m):
    import dns.rcode
    import dns.rdatatype

    def sec(rrsets):
        return sorted((r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype),
                       tuple(sorted(x.to_text().lower() for x in r))) for r in rrsets)

    def count(rrsets):
        return sum(len(r) for r in rrsets)

    auth = sorted((r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype))
                  for r in m.authority)
    return {"rcode": dns.rcode.to_text(m.rcode()), "an": count(m.answer),
            "ns": count(m.authority), "ar": count(m.additional) + (1 if m.edns >= 0 else 0),
            "answer": sec(m.answer), "additional": sec(m.additional), "authority": auth,
            "aa": bool(m.flags & 0x0400), "tc": bool(m.flags & 0x0200)}


def check(d, servers):
    with open(os.path.join(d, "queries.txt")) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    rnd = random.Random(7)
    sample = [("svc0.service.consul", "A"), ("_svc0._tcp.service.consul", "SRV"),
              ("missing0.service.consul", "A")]
    side = list(sample)
    sample += [tuple(x) for x in rnd.sample(lines, min(300, len(lines)))]
    names = [s.split("=", 1)[0] for s in servers]
    addrs = [s.split("=", 1)[1] for s in servers]
    bad = []
    rows = []
    nsd_ns = [0]
    for name, rtype in sample:
        shapes = [shape(ask(a, name, rtype)) for a in addrs]
        if (name, rtype) in side and all(r[:2] != (name, rtype) for r in rows):
            rows.append((name, rtype, shapes))
        ref = shapes[0]
        for n, s in zip(names[1:], shapes[1:]):
            if n == "nsd" and s["rcode"] == "NOERROR" and s["authority"] == [("consul.", "NS")]:
                s = dict(s, ns=0, authority=[])  # NSD's NS RRset in Authority: see gen()
                nsd_ns[0] += 1
            for k in ("rcode", "an", "ns", "ar", "answer", "additional", "authority", "aa", "tc"):
                if s[k] != ref[k]:
                    bad.append("%s %s: %s %s=%r, %s %s=%r" % (name, rtype, names[0], k, ref[k],
                                                            n, k, s[k]))
    print("answers side by side (EDNS 4096; counts as dig prints them, OPT counted in ADDITIONAL):")
    print("  %-32s %-4s  %s" % ("query", "type", "   ".join("%-28s" % n for n in names)))
    side_out = []
    for name, rtype, shapes in rows:
        cells = ["%-8s an=%d ns=%d ar=%d" % (s["rcode"], s["an"], s["ns"], s["ar"]) for s in shapes]
        print("  %-32s %-4s  %s" % (name, rtype, "   ".join("%-28s" % c for c in cells)))
        side_out.append({"name": name, "type": rtype,
                         "servers": {n: {k: s[k] for k in ("rcode", "an", "ns", "ar")}
                                     for n, s in zip(names, shapes)}})
    for b in bad[:20]:
        print("MISMATCH " + b)
    res = {"compared": len(sample), "mismatches": len(bad), "side_by_side": side_out,
           "nsd_authority_ns": nsd_ns[0]}
    print(json.dumps(res))
    sys.exit(1 if bad else 0)


# ---- process trees and CPU ---------------------------------------------------------------

def proc_table():
    """{pid: (ppid, utime+stime ticks, comm)} of every process."""
    return {int(d): (int(f[1]), int(f[11]) + int(f[12]), comm) for d, comm, f in cpu.stats()}


def tree(t, roots):
    out = set()
    todo = [r for r in roots if r in t]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo += [c for c, v in t.items() if v[0] == p]
    return out


def tree_ticks(t, roots):
    return sum(t[p][1] for p in tree(t, roots))


def mem(pids):
    t = proc_table()
    res = {"rss_kb": 0, "anon_kb": 0, "file_kb": 0, "hwm_kb": 0}
    keys = {"VmRSS": "rss_kb", "RssAnon": "anon_kb", "RssFile": "file_kb", "VmHWM": "hwm_kb"}
    for p in tree(t, pids):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in keys:
                        res[keys[k]] += int(v.split()[0])
        except OSError:
            pass
    return res


# ---- one dnsperf run ---------------------------------------------------------------------

STAT_RE = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "runtime_s": r"Run time \(s\):\s+([\d.]+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "lat_avg_s": r"Average Latency \(s\):\s+([\d.]+)",
    "lat_min_s": r"Average Latency \(s\):\s+[\d.]+ \(min ([\d.]+)",
    "lat_max_s": r"Average Latency \(s\):.*max ([\d.]+)\)",
    "lat_sd_s": r"Latency StdDev \(s\):\s+([\d.]+)",
    "req_size": r"Average packet size:\s+request (\d+)",
    "resp_size": r"Average packet size:\s+request \d+, response (\d+)",
}


def pct(xs, p):
    if not xs:
        return None
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))


def udp_socket_drops(addr):
    """Sum of the drops column of /proc/net/udp over the sockets bound to addr (IP:PORT)."""
    ip, port = addr.rsplit(":", 1)
    a = ip.split(".")
    want = "%02X%02X%02X%02X:%04X" % (int(a[3]), int(a[2]), int(a[1]), int(a[0]), int(port))
    n = 0
    with open("/proc/net/udp") as f:
        next(f)
        for ln in f:
            x = ln.split()
            if x[1] == want:
                n += int(x[-1])
    return n


def measure(out_path, fields, server_pids, verbose, cmd, server_addr, ignore_pids=(),
            max_other=None):
    u0 = udp_counters()
    d0 = udp_socket_drops(server_addr) if server_addr else 0
    t0 = proc_table()
    c0 = tree_ticks(t0, server_pids)
    w0 = time.monotonic()
    with open(out_path + ".dnsperf.txt", "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - w0
    t1 = proc_table()
    u1 = udp_counters()
    d1 = udp_socket_drops(server_addr) if server_addr else 0
    c1 = tree_ticks(t1, server_pids)
    skip = tree(t1, list(server_pids) + list(ignore_pids)) | {os.getpid(), os.getppid()}
    other, kthreads = {}, 0
    for pid, (ppid, ticks, comm) in t1.items():
        if pid in skip:
            continue
        dt = ticks - (t0[pid][1] if pid in t0 else 0)  # kernel workers rename themselves
        if dt <= 0:
            continue
        if pid == 2 or ppid == 2:  # kernel threads: softirq and I/O work, often our own
            kthreads += dt
        else:
            other[comm] = other.get(comm, 0) + dt
    rc = os.waitstatus_to_exitcode(status)
    with open(out_path + ".dnsperf.txt") as f:
        text = f.read()
    rec = dict(fields)
    rec["dnsperf_rc"] = rc
    for k, rx in STAT_RE.items():
        m = re.search(rx, text)
        rec[k] = float(m.group(1)) if m else None
    m = re.search(r"Response codes:\s+(.*)", text)
    rec["rcodes"] = dict((a, int(b)) for a, b in re.findall(r"(\w+) (\d+) \(", m.group(1))) \
        if m else {}
    rec["wall_s"] = round(wall, 3)
    rec["server_cpu_s"] = (c1 - c0) / HZ
    rec["client_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 3)
    rec["other_cpu_s"] = sum(other.values()) / HZ  # user processes only
    rec["kthread_cpu_s"] = kthreads / HZ
    rec["other_top"] = sorted(((v / HZ, k) for k, v in other.items()), reverse=True)[:3]
    # UDP receive-buffer drops on the machine, and on the server's own sockets (the rest are
    # mostly dnsperf's: the responses it did not read in time)
    rec["udp_rcvbuf_errors"] = u1.get("RcvbufErrors", 0) - u0.get("RcvbufErrors", 0)
    rec["server_socket_drops"] = d1 - d0
    if rec["completed"]:
        rec["cpu_us_per_q"] = rec["server_cpu_s"] * 1e6 / rec["completed"]
    if verbose:
        lats = []
        for line in text.splitlines():
            if line.startswith("> "):
                parts = line.split()
                if len(parts) >= 5 and parts[1] != "T":
                    try:
                        lats.append(float(parts[-1]))
                    except ValueError:
                        pass
        lats.sort()
        rec["lat_n"] = len(lats)
        for name, q in (("p50_us", 0.5), ("p90_us", 0.9), ("p99_us", 0.99), ("p999_us", 0.999)):
            v = pct(lats, q)
            rec[name] = None if v is None else round(v * 1e6, 1)
        os.unlink(out_path + ".dnsperf.txt")  # 200k lines: keep only the summary
        with open(out_path + ".dnsperf.txt", "w") as f:
            f.write("\n".join(ln for ln in text.splitlines() if not ln.startswith(">")) + "\n")
    disturbed = max_other is not None and rec["other_cpu_s"] / wall > max_other
    with open(out_path + (".disturbed" if disturbed else ""), "a") as f:
        f.write(json.dumps(rec) + "\n")
    summary = "qps=%.0f lost=%d (drops: server %d, all UDP %d) srv_cpu=%.2fs (%.2f us/q) " \
        "client_cpu=%.2fs other=%.2fs %s" % (
            rec["qps"] or 0, rec["lost"] or 0, rec["server_socket_drops"],
            rec["udp_rcvbuf_errors"], rec["server_cpu_s"], rec.get("cpu_us_per_q", 0),
            rec["client_cpu_s"], rec["other_cpu_s"],
            ",".join("%s:%.2f" % (k, v) for v, k in rec["other_top"]))
    if verbose:
        summary += " p50=%sus p99=%sus" % (rec.get("p50_us"), rec.get("p99_us"))
    print(summary)
    if rc != 0 or rec["completed"] is None:
        print("dnsperf failed (exit %d):\n%s" % (rc, text[-2000:]), file=sys.stderr)
        sys.exit(1)
    if disturbed:
        sys.exit(3)


# ---- report ------------------------------------------------------------------------------

SERVERS = [("herald", "Herald"), ("nsd", "NSD"), ("knot", "Knot")]


def rng(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt % xs[0]
    return "%s (%s–%s)" % (fmt % med(xs), fmt % min(xs), fmt % max(xs))


def section(d):
    meta = report.load(os.path.join(d, "meta.json"))
    runs = []
    if os.path.exists(os.path.join(d, "runs.jsonl")):
        with open(os.path.join(d, "runs.jsonl")) as f:
            runs = [json.loads(ln) for ln in f if ln.strip()]
    sets = report.load(os.path.join(d, "sets.json"), {})
    disturbed = []
    if os.path.exists(os.path.join(d, "runs.jsonl.disturbed")):
        with open(os.path.join(d, "runs.jsonl.disturbed")) as f:
            disturbed = [json.loads(ln) for ln in f if ln.strip()]
    checks = report.load(os.path.join(d, "checks.json"), {})

    def sel(**kw):
        return [r for r in runs if all(r.get(k) == v for k, v in kw.items())]

    def lost(rs):
        return "%d (%d)" % (sum(int(r["lost"]) for r in rs),
                            sum(r.get("server_socket_drops", 0) for r in rs))

    def medf(rs, k):
        xs = [r[k] for r in rs if r.get(k) is not None]
        return med(xs) if xs else None

    o = []
    o.append("## DNS: Herald vs NSD 4 and Knot 3 (`tests/bench/dns.sh`)")
    o.append("")
    o += report.machine(meta)
    o.append("- herald: commit %s%s, release build (`make`, -O2), `%s` (`-dns-workers 1`, then "
             "`%s`)" % (meta["commit"], " (+ uncommitted changes in the work tree)"
                        if meta["dirty"] else "", meta["herald_cmd"], meta["all_workers"]))
    o.append("- nsd: %s; `%s`; nsd.conf: %s" % (meta["nsd_version"], meta["nsd_cmd"],
                                                meta["nsd_conf"]))
    o.append("- knot: %s; `%s`; knot.conf: %s" % (meta["knot_version"], meta["knot_cmd"],
                                                  meta["knot_conf"]))
    o.append("- client: %s; %s" % (meta["dnsperf_version"], meta["dnsperf_desc"]))
    o.append("- pinning: %s" % meta["pinning"])
    o.append("- command: `%s`" % meta["command"])
    o.append("")
    o.append("Data sets (the same in all three servers; Herald's loaded through "
             "`PUT /v1/catalog/register`, one instance per request, by "
             "`tests/bench/dns_bench.py load`; NSD and Knot read a zone file "
             "`dns_bench.py gen` writes):")
    o.append("")
    o.append("| set | nodes | services × instances | zone RRs | query file | load into Herald | "
             "Herald RSS after load | after the runs (anon / file) | NSD RSS | Knot RSS |")
    o.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    mb = lambda kb: "%.1f MB" % (kb / 1024)
    for key in ("small", "large"):
        s = sets.get(key)
        if not s:
            continue
        p = s["params"]
        ld = s["load"]
        after = s.get("herald_mem_after") or {}
        o.append("| %s | %d | %d × %d = %d | %d | %d queries, %d distinct names | %.1f s "
                 "(%d/s, %d connections, %d errors) | %s | %s (%s / %s) | %s | %s |" % (
                     key, p["nodes"], p["services"], p["inst"], p["instances"], p["zone_rrs"],
                     p["queries"], p["distinct_names"], ld["seconds"], ld["per_s"],
                     ld["connections"], ld["errors"], mb(s["herald_mem"]["rss_kb"]),
                     mb(after.get("rss_kb", 0)), mb(after.get("anon_kb", 0)),
                     mb(after.get("file_kb", 0)), mb(s["nsd_mem"]["rss_kb"]),
                     mb(s["knot_mem"]["rss_kb"])))
    o.append("")
    o.append("Query mix (`dns_bench.py gen`): in every ten queries 4 `svcN.service.consul A` "
             "(3 A records), 1 `nodeK.node.dc1.consul A`, 4 `_svcN._tcp.service.consul SRV` (3 "
             "SRV, the 3 targets' A in Additional), 1 `missingN.service.consul A` (NXDOMAIN, "
             "SOA in Authority); names drawn at random, all with EDNS (dnsperf -e).")
    if checks:
        o.append("")
        o.append("Answers checked before measuring (`dns_bench.py check`, same RR sets in "
                 "Answer and Additional, same rcode and counts, TTLs and order aside): "
                 + "; ".join("%s: %d queries, %d mismatches" % (k, v["compared"], v["mismatches"])
                             for k, v in checks.items()) + ". Side by side (small set):")
        o.append("")
        c = checks.get("small", next(iter(checks.values())))
        o.append("| query | " + " | ".join(n for _, n in SERVERS) + " |")
        o.append("|---|" + "---|" * len(SERVERS))
        for row in c["side_by_side"]:
            cells = []
            for k, _ in SERVERS:
                s = row["servers"].get(k)
                cells.append("%s, answer %d, authority %d, additional %d" % (
                    s["rcode"], s["an"], s["ns"], s["ar"]) if s else "–")
            o.append("| `%s %s` | %s |" % (row["name"], row["type"], " | ".join(cells)))
        o.append("")
        o.append("(additional counts the OPT record, as dig does.)")
    o.append("")
    o.append("Each figure: median of %d interleaved repetitions (Herald, NSD, Knot, Herald, ...), "
             "(min–max) beside it. QPS and lost: dnsperf's. Server CPU: utime+stime of the "
             "server's processes and threads (/proc/PID/stat; NSD's child processes included) "
             "per completed query; server busy = its CPU seconds per second of run (1.00 = one "
             "core: below that the server had idle time, so the client set the pace). Client "
             "busy: dnsperf's own CPU (rusage) per second. Lost: summed over the repetitions; "
             "in brackets the datagrams the kernel dropped at the server's own sockets (full "
             "receive buffer: the drops column of /proc/net/udp). Other: CPU of every other "
             "user process meanwhile (kernel threads left out), in cores, worst repetition "
             "(**bold** above 0.05: something else competed; a run above 0.1 is repeated, "
             "at most twice, and the last attempt kept; this run repeated %d)."
             % (meta["reps"], len(disturbed)))
    def cpu_cell(rs):
        return rng([r.get("cpu_us_per_q") for r in rs], "%.2f")

    def server_rows(st, wk, mode, cells):
        """A table row a server: name, QPS, lost, cells(its runs)..., other (cores)."""
        for k, n in SERVERS:
            rs = sel(set=st, workers=wk, mode=mode, server=k)
            if not rs:
                continue
            other = max(r["other_cpu_s"] / r["wall_s"] for r in rs)
            o.append("| %s |" % " | ".join(
                [n, rng([r["qps"] for r in rs], "%.0f"), lost(rs)] + cells(rs) +
                [("%.2f" if other <= 0.05 else "**%.2f**") % other]))

    configs = [("small", "1", "small set, one worker each"),
               ("small", "all", "small set, all workers (%s each)" % meta["nproc"]),
               ("large", "1", "large set, one worker each")]
    for st, wk, title in configs:
        if not sel(set=st, workers=wk):
            continue
        o.append("")
        o.append("### %s" % title.capitalize())
        o.append("")
        mx = [r for r in sel(set=st, workers=wk, mode="max")]
        if mx:
            o.append("Maximum throughput: `%s`" % mx[0]["cmd"])
            o.append("")
            o.append("| server | QPS | lost (server socket drops) | server CPU µs/query | "
                     "QPS per server core | server busy | client busy | avg latency µs | "
                     "other (cores) |")
            o.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            server_rows(st, wk, "max", lambda rs: [
                cpu_cell(rs),
                rng([1e6 / r["cpu_us_per_q"] for r in rs if r.get("cpu_us_per_q")], "%.0f"),
                rng([r["server_cpu_s"] / r["runtime_s"] for r in rs], "%.2f"),
                rng([r["client_cpu_s"] / r["wall_s"] for r in rs], "%.2f"),
                rng([r["lat_avg_s"] * 1e6 for r in rs], "%.0f")])
        bu = sel(set=st, workers=wk, mode="burst")
        if bu:
            o.append("")
            o.append("Bursts: `%s` (as above with %s queries outstanding: more than a "
                     "default-sized socket receive buffer holds while the server is off the CPU)"
                     % (bu[0]["cmd"], bu[0]["cmd"].split(" -q ")[1].split()[0]))
            o.append("")
            o.append("| server | QPS | lost (server socket drops) | server CPU µs/query | "
                     "other (cores) |")
            o.append("|---|---:|---:|---:|---:|")
            server_rows(st, wk, "burst", lambda rs: [cpu_cell(rs)])
        fx = sel(set=st, workers=wk, mode="fixed")
        if fx:
            o.append("")
            o.append("Fixed rate: `%s` (per-query latencies from `-v`)" % fx[0]["cmd"])
            o.append("")
            o.append("| server | QPS | lost (server socket drops) | p50 µs | p90 µs | p99 µs | "
                     "p99.9 µs | server CPU µs/query | other (cores) |")
            o.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            server_rows(st, wk, "fixed", lambda rs: [
                rng([r.get(k) for r in rs], "%.0f")
                for k in ("p50_us", "p90_us", "p99_us", "p999_us")] + [cpu_cell(rs)])
        o.append("")
        rat = []
        for other_k, other_n in (("knot", "Knot"), ("nsd", "NSD")):
            h = sel(set=st, workers=wk, mode="max", server="herald")
            x = sel(set=st, workers=wk, mode="max", server=other_k)
            if h and x:
                rat.append("Herald / %s: QPS %.2f×, CPU per query %.2f×" % (
                    other_n, medf(h, "qps") / medf(x, "qps"),
                    medf(h, "cpu_us_per_q") / medf(x, "cpu_us_per_q")))
        if rat:
            o.append("Ratios (medians, maximum-throughput runs): " + "; ".join(rat) + ".")
    # Targets.
    o.append("")
    o.append("### Targets")
    o.append("")

    def verdict(ok):
        return "met" if ok else "**missed**"

    t = []
    h1 = sel(set="small", workers="1", mode="max", server="herald")
    k1 = sel(set="small", workers="1", mode="max", server="knot")
    if h1 and k1:
        hq, kq = medf(h1, "qps"), medf(k1, "qps")
        hc, kc = medf(h1, "cpu_us_per_q"), medf(k1, "cpu_us_per_q")
        t.append("One worker, QPS ≥ Knot's (same run, medians): Herald %.0f, Knot %.0f: %s"
                 % (hq, kq, verdict(hq >= kq)))
        t.append("One worker, CPU per query ≤ Knot's: Herald %.2f µs, Knot %.2f µs: %s"
                 % (hc, kc, verdict(hc <= kc)))
    if h1 and k1:
        hcap = med([1e6 / r["cpu_us_per_q"] for r in h1])
        kcap = med([1e6 / r["cpu_us_per_q"] for r in k1])
        t.append("(the same by server CPU, where the client does not set the pace: Herald "
                 "%.0f queries per core-second, Knot %.0f: %s)" % (
                     hcap, kcap, "Herald ahead" if hcap >= kcap else "Herald behind"))
    hr = [r for r in sel(server="herald") if r["mode"] != "burst"]
    if hr:
        lost_ = sum(int(r["lost"]) for r in hr)
        t.append("Zero lost queries (all %d Herald maximum-throughput and fixed-rate runs): "
                 "%d lost: %s" % (len(hr), lost_, verdict(lost_ == 0)))
    hb = sel(server="herald", mode="burst")
    if hb:
        t.append("(bursts, -q %s: Herald lost %d in %d runs; NSD %d, Knot %d)" % (
            hb[0]["cmd"].split(" -q ")[1].split()[0], sum(int(r["lost"]) for r in hb), len(hb),
            sum(int(r["lost"]) for r in sel(server="nsd", mode="burst")),
            sum(int(r["lost"]) for r in sel(server="knot", mode="burst"))))
    hf = sel(set="small", workers="1", mode="fixed", server="herald")
    if hf:
        p50 = medf(hf, "p50_us")
        t.append("p50 < 100 µs at 20k QPS (small set, one worker): %.0f µs (worst run %.0f): %s"
                 % (p50, max(r["p50_us"] for r in hf), verdict(p50 < 100)))
    lg = sets.get("large")
    if lg:
        worst = max(lg["herald_mem"]["rss_kb"], (lg.get("herald_mem_after") or {}).get("rss_kb", 0))
        t.append("%d instances, RSS < 150 MB: %s after load, %s after the runs: %s" % (
            lg["params"]["instances"], mb(lg["herald_mem"]["rss_kb"]),
            mb((lg.get("herald_mem_after") or {}).get("rss_kb", 0)),
            verdict(worst < 150 * 1024)))
        hl = sel(set="large", workers="1", mode="max", server="herald")
        if hl and h1:
            ql, qs = medf(hl, "qps"), medf(h1, "qps")
            t.append("%d instances, QPS within 10%% of the small set (one worker): %.0f vs %.0f "
                     "(%+.1f%%): %s" % (lg["params"]["instances"], ql, qs, (ql / qs - 1) * 100,
                                        verdict(ql >= 0.9 * qs)))
    for x in t:
        o.append("- " + x)
    o.append("")
    return "\n".join(o)


# ---- main --------------------------------------------------------------------------------

def opts(argv):
    out, pos = {}, []
    i = 0
    while i < len(argv):
        if argv[i].startswith("--"):
            out[argv[i]] = argv[i + 1]
            i += 2
        else:
            pos.append(argv[i])
            i += 1
    return out, pos


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "gen":
        o, pos = opts(a[1:])
        gen(pos[0], o)
    elif cmd == "load":
        o, pos = opts(a[1:])
        load(pos[0], pos[1], o)
    elif cmd == "check":
        check(a[1], a[2:])
    elif cmd == "measure":
        sep = a.index("--")
        head, dnsperf = a[1:sep], a[sep + 1:]
        out = head[0]
        fields, server_pids, verbose, server_addr = {}, [], False, None
        ignore_pids, max_other = [], None
        i = 1
        while i < len(head):
            if head[i] == "--ignore-pids":
                ignore_pids = [int(x) for x in head[i + 1].split()]
                i += 2
            elif head[i] == "--max-other":
                max_other = float(head[i + 1])
                i += 2
            elif head[i] == "--server-addr":
                server_addr = head[i + 1]
                i += 2
            elif head[i] == "--server-pids":
                server_pids = [int(x) for x in head[i + 1].split()]
                i += 2
            elif head[i] == "--verbose-latency":
                verbose = True
                i += 1
            else:
                k, v = head[i].split("=", 1)
                fields[k] = int(v) if v.isdigit() and k == "rep" else v
                i += 1
        measure(out, fields, server_pids, verbose, dnsperf, server_addr, ignore_pids, max_other)
    elif cmd == "tree-ticks":
        print(tree_ticks(proc_table(), [int(x) for x in a[1:]]))
    elif cmd == "tree-pids":
        print(" ".join(str(p) for p in sorted(tree(proc_table(), [int(x) for x in a[1:]]))))
    elif cmd == "mem":
        print(json.dumps(mem([int(x) for x in a[1:]])))
    elif cmd == "report":
        report.publish(section(a[1]), a[3] if len(a) == 4 and a[2] == "--record" else None,
                       *report.markers("dns.sh"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

"""DNS clients: dig, kdig and dnspython, against an agent's DNS listener or any addr:port.
Every query has a timeout."""
import subprocess


def dig(agent, *args, timeout=20):
    """Runs dig against the agent's DNS port and returns its stdout (one try, 2 s)."""
    argv = ["dig", "@" + agent.addr, "-p", str(agent.dns_port), "+time=2", "+tries=1"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)
    return r.stdout


def kdig(agent, *args, timeout=20):
    """Runs kdig against the agent's DNS port and returns its stdout."""
    argv = ["kdig", "@" + agent.addr, "-p", str(agent.dns_port), "+time=2", "+retry=0"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)
    return r.stdout


def dns_query(agent, name, rdtype="A", tcp=False, timeout=3, **make_kw):
    """One query with dnspython (UDP unless tcp); returns the dns.message.Message."""
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype, **make_kw)
    if tcp:
        return dns.query.tcp(q, agent.addr, port=agent.dns_port, timeout=timeout)
    return dns.query.udp(q, agent.addr, port=agent.dns_port, timeout=timeout,
                         ignore_trailing=False)


def dns_ask(addr, port, name, rdtype="A", tcp=False, timeout=2, source=None, **make_kw):
    """One dnspython query to addr:port (optionally from a given source address)."""
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype, **make_kw)
    if tcp:
        return dns.query.tcp(q, addr, port=port, timeout=timeout, source=source)
    return dns.query.udp(q, addr, port=port, timeout=timeout, source=source)

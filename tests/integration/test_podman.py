"""A real container runtime: a podman container resolves through Herald (issue 12 item 5).

Debian's podman (its CLI is Docker's), rootful, with runc and cgroupfs, runs a container on its
default bridge network ("podman", CNI's cni-podman0 here) with `--dns <bridge address>
--dns-search service.consul`: exactly what `docker run --dns 172.17.0.1 --dns-search
service.consul` does. Herald listens on the bridge address, port 53 (`addresses.dns`,
`ports.dns`, HTTP stays on loopback) and forwards outside names to an NSD upstream on loopback.
Inside the container glibc's getent (with libnss_dns and an nsswitch.conf `hosts: files dns`)
resolves the short name `redis` to the healthy instances only, and outside names through
Herald's recursion. The agent's config and the container's DNS options are the README's
(section "Docker and Podman"), and so is the containers.conf that gives every container the
same resolver (a second, short-lived container run with CONTAINERS_CONF).

No image registry is reachable: the image is built by `podman import` from a tar made here
(busybox from busybox-static, getent with the libraries ldd lists). The bridge exists only while
a container runs on it, so a container is started first and the bridge's address is read from
`podman network inspect`. Everything (container, image, agent, NSD, and what the bridge
left on the host) is removed by name or pid whatever the outcome; every wait is bounded.
podman missing is a failure, not a skip: scripts/deps.sh installs it."""
import io
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import tarfile

import pytest

from conftest import Agent, next_addr, readme_snippet, upstream_zones, wait_until

# Global options: runc and cgroupfs (no systemd here). Per container: the machine's hard
# limits are lower than podman's default ulimits.
PODMAN_GLOBAL = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
ULIMITS = ["--ulimit", "nofile=10000:10000", "--ulimit", "nproc=1000:1000"]
NSS_LIBS = ["libnss_files.so.2", "libnss_dns.so.2"]


def podman(*argv, timeout=60, check=True, env=None):
    exe = shutil.which("podman")
    assert exe, "podman is not installed (scripts/deps.sh installs it)"
    r = subprocess.run([exe] + PODMAN_GLOBAL + list(argv), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, **env) if env else None)
    if check:
        assert r.returncode == 0, "podman %s: rc %s\n%s%s" % (" ".join(argv), r.returncode,
                                                             r.stdout, r.stderr)
    return r


def ldd_paths(path):
    """The shared objects (absolute paths, the loader included) that ldd lists for path."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def nss_lib(name):
    """Where glibc's NSS module `name` lives on this machine (the libc's directory)."""
    for lib in ldd_paths(shutil.which("getent") or "/usr/bin/getent"):
        if os.path.basename(lib).startswith("libc.so"):
            cand = os.path.join(os.path.dirname(os.path.realpath(lib)), name)
            if os.path.exists(cand):
                return cand
    raise AssertionError("%s not found next to libc" % name)


def build_image_tar(path):
    """A root file system: busybox (static), getent with its libraries and the NSS modules for
    files and dns (with theirs), /etc/nsswitch.conf `hosts: files dns`."""
    getent = shutil.which("getent") or "/usr/bin/getent"
    busybox = "/bin/busybox"
    assert os.path.exists(busybox), "busybox-static is not installed (scripts/deps.sh)"
    files = {"/bin/busybox": busybox, "/usr/bin/getent": getent}
    for obj in [getent] + [nss_lib(n) for n in NSS_LIBS]:
        if obj != getent:
            files[obj] = obj
        for lib in ldd_paths(obj):
            files[lib] = lib
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "usr", "usr/bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for dest, src in sorted(files.items()):
            tar.add(os.path.realpath(src), arcname=dest.lstrip("/"), recursive=False)
        for name, text in (("etc/nsswitch.conf", "hosts: files dns\n"), ("etc/hosts", ""),
                           ("etc/resolv.conf", "")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def bridge_of_default_network():
    """(interface, gateway address, subnet) of podman's default network, from podman."""
    nets = json.loads(podman("network", "inspect", "podman").stdout)
    net = nets[0]
    sub = net["subnets"][0]
    return net.get("network_interface"), sub["gateway"], sub["subnet"]


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
CNI_CHAINS = ("CNI-FORWARD", "CNI-ADMIN")


def read_ip_forward():
    with open(IP_FORWARD) as f:
        return f.read().strip()


def chain_exists(chain):
    exe = shutil.which("iptables")
    return bool(exe) and subprocess.run([exe, "-S", chain], capture_output=True,
                                        timeout=10).returncode == 0


def link_exists(iface):
    return subprocess.run(["ip", "link", "show", "dev", iface], capture_output=True,
                          timeout=10).returncode == 0


class HostNetState:
    """What the first container on podman's default network changes on the host, and leaves
    behind when it is removed: the bridge (with its address, which the agent's own default
    bind-address choice would then see), net.ipv4.ip_forward and the CNI firewall plugin's
    chains. Recorded before; put back after the test's container is gone, unless another
    container still uses the network."""

    def __init__(self, iface):
        self.iface = iface
        self.link = link_exists(iface) if iface else True
        self.forward = read_ip_forward()
        self.chains = {c: chain_exists(c) for c in CNI_CHAINS}

    def restore(self):
        others = podman("ps", "-q", "--filter", "network=podman", check=False).stdout.split()
        if others:
            return
        if not self.link and link_exists(self.iface):
            subprocess.run(["ip", "link", "del", "dev", self.iface], capture_output=True,
                           timeout=10)
        if read_ip_forward() != self.forward:
            with open(IP_FORWARD, "w") as f:
                f.write(self.forward + "\n")
        ipt = shutil.which("iptables")
        if not self.chains["CNI-FORWARD"] and chain_exists("CNI-FORWARD"):
            subprocess.run([ipt, "-D", "FORWARD", "-m", "comment", "--comment",
                            "CNI firewall plugin rules", "-j", "CNI-FORWARD"],
                           capture_output=True, timeout=10)
        for chain in CNI_CHAINS:
            if not self.chains[chain] and chain_exists(chain):
                subprocess.run([ipt, "-F", chain], capture_output=True, timeout=10)
        for chain in CNI_CHAINS:
            if not self.chains[chain] and chain_exists(chain):
                subprocess.run([ipt, "-X", chain], capture_output=True, timeout=10)


def readme_setup(gw):
    """The README's setup (section "Docker and Podman"), for the bridge address gw: the agent's
    config (snippet podman-dns) and the `podman run` options (snippet podman-run)."""
    doc_gw = "10.88.0.1"
    config = json.loads(readme_snippet("podman-dns"))
    assert config["addresses"]["dns"] == doc_gw and config["ports"]["dns"] == 53, config
    config["addresses"]["dns"] = gw
    argv = shlex.split(readme_snippet("podman-run"))
    assert argv[:2] == ["podman", "run"], argv
    opts = []
    for flag in ("--dns", "--dns-search"):
        value = argv[argv.index(flag) + 1]
        opts += [flag, gw if value == doc_gw else value]
    assert opts == ["--dns", gw, "--dns-search", "service.consul"], argv
    return config, opts


def address_up(iface, addr):
    r = subprocess.run(["ip", "-o", "addr", "show", "dev", iface], capture_output=True,
                       text=True, timeout=10)
    return r.returncode == 0 and (" %s/" % addr) in r.stdout


@pytest.fixture
def podman_host(tmpdir_path, peers):
    """A container on podman's default bridge, using Herald on the bridge address (port 53)
    as its resolver with search service.consul; yields the agent, the container's name, the
    image, the bridge address and the test's temp dir."""
    tag = "herald-test-%d" % os.getpid()
    image = "localhost/%s:latest" % tag
    ctr = tag
    agent = None
    imported = False
    host = None
    tar = os.path.join(tmpdir_path, "rootfs.tar")
    try:
        build_image_tar(tar)
        podman("rm", "-f", "-t", "0", "--ignore", ctr)  # a leftover of a killed run
        podman("import", tar, image)
        imported = True
        # The bridge (and its address) exists only while a container runs on it: start the
        # container first (its lifetime bounded by the sleep), read the address from podman.
        iface, gw, subnet = bridge_of_default_network()
        host = HostNetState(iface)
        config, dns_opts = readme_setup(gw)
        podman("run", "-d", "--name", ctr, "--pull", "never", "--network", "podman",
               *dns_opts, *ULIMITS, image, "/bin/busybox", "sleep", "300")
        wait_until(lambda: address_up(iface, gw), timeout=10,
                   msg="%s on the bridge %s" % (gw, iface))
        up_addr = next_addr()
        peers.nsd(up_addr, 5300, upstream_zones())
        net = str(ipaddress.ip_network(subnet, strict=False))
        # a server as in the README (-server -bootstrap-expect 1 -data-dir); the bridge's
        # network is named for recursion whatever podman's subnet (the default list has 10/8)
        agent = Agent(tmpdir_path, args=["-recursor", "%s:5300" % up_addr,
                                         "-allow-recursion", net,
                                         "-allow-recursion", "127.0.0.0/8"],
                      config=config, data_dir=os.path.join(tmpdir_path, "data"))
        agent.start()
        yield {"agent": agent, "ctr": ctr, "image": image, "gw": gw, "tmp": tmpdir_path}
    finally:
        failures = []
        if agent is not None and agent.proc is not None:
            rc = agent.stop()
            if rc != 0:
                failures.append("herald exited %s:\n%s" % (rc, agent.read_log()))
        podman("rm", "-f", "-t", "0", "--ignore", ctr, check=False)
        if host is not None:
            host.restore()
        if imported:
            podman("rmi", "-f", image, check=False)
        assert not failures, "\n".join(failures)


def in_container(ctr, *argv):
    return podman("exec", ctr, *argv, check=False, timeout=30)


def register_redis(agent, sid, addr):
    r = agent.put("/v1/agent/service/register",
                  {"ID": sid, "Name": "redis", "Address": addr, "Port": 6379,
                   "Check": {"CheckID": "ttl-" + sid, "Name": "ttl", "TTL": "300s"}})
    assert r.status == 200, r.text
    r = agent.put("/v1/agent/check/pass/ttl-" + sid)
    assert r.status == 200, r.text


def redis_v4(ctr):
    """The addresses `getent ahostsv4 redis` gives inside the container (None: not found)."""
    r = in_container(ctr, "/usr/bin/getent", "ahostsv4", "redis")
    if r.returncode == 2:
        return None
    assert r.returncode == 0, r
    return sorted({line.split()[0] for line in r.stdout.splitlines() if line.strip()})


def test_container_resolves_healthy_instances_and_outside_names(podman_host):
    agent, ctr, gw = podman_host["agent"], podman_host["ctr"], podman_host["gw"]
    # What podman wrote for --dns/--dns-search, as Docker does.
    r = in_container(ctr, "/bin/busybox", "cat", "/etc/resolv.conf")
    assert r.returncode == 0, r
    lines = [ln.split() for ln in r.stdout.splitlines() if ln.strip()]
    assert ["nameserver", gw] in lines and ["search", "service.consul"] in lines, r.stdout
    assert [ln for ln in lines if ln[0] == "nameserver"] == [["nameserver", gw]], r.stdout

    register_redis(agent, "redis-1", "10.1.0.5")
    register_redis(agent, "redis-2", "10.1.0.6")
    wait_until(lambda: redis_v4(ctr) == ["10.1.0.5", "10.1.0.6"], timeout=10,
               msg="both healthy redis instances from inside the container")
    r = in_container(ctr, "/usr/bin/getent", "hosts", "redis")
    assert r.returncode == 0, r
    fields = r.stdout.split()
    assert fields[0] in ("10.1.0.5", "10.1.0.6") and fields[1] == "redis.service.consul", r

    # The same for every container, from containers.conf (the README's) instead of flags.
    conf = os.path.join(podman_host["tmp"], "containers.conf")
    with open(conf, "w") as f:
        f.write(readme_snippet("podman-containers-conf").replace("10.88.0.1", gw))
    r = podman("run", "--rm", "--pull", "never", "--network", "podman", *ULIMITS,
               podman_host["image"], "/bin/busybox", "sh", "-c",
               "cat /etc/resolv.conf && /usr/bin/getent ahostsv4 redis",
               env={"CONTAINERS_CONF": conf}, check=False)
    assert r.returncode == 0, r
    assert "nameserver %s" % gw in r.stdout and "search service.consul" in r.stdout, r.stdout
    assert "10.1.0.5" in r.stdout and "10.1.0.6" in r.stdout, r.stdout

    # The instance whose TTL check fails is no longer an answer; then neither is.
    assert agent.put("/v1/agent/check/fail/ttl-redis-1?note=down").status == 200
    wait_until(lambda: redis_v4(ctr) == ["10.1.0.6"], timeout=10,
               msg="only the healthy instance after redis-1's check failed")
    assert agent.put("/v1/agent/check/fail/ttl-redis-2").status == 200
    wait_until(lambda: redis_v4(ctr) is None, timeout=10,
               msg="redis not found once every instance's check failed")
    r = in_container(ctr, "/usr/bin/getent", "hosts", "redis")
    assert r.returncode == 2, r

    # Outside names: through Herald's recursion (the NSD upstream on loopback).
    r = in_container(ctr, "/usr/bin/getent", "ahostsv4", "www.example.org")
    assert r.returncode == 0 and "192.0.2.1" in r.stdout.split(), r
    r = in_container(ctr, "/usr/bin/getent", "hosts", "no-such-name.example.org")
    assert r.returncode == 2, r

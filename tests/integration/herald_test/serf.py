"""What a real `serf agent` (Debian's serf, started by the gossip tests) lists."""
import json
import subprocess


def serf_members(serf_addr):
    """serf's member list through its RPC port on serf_addr, by name ({} if it does not answer)."""
    out = subprocess.run(["serf", "members", "-rpc-addr=%s:7373" % serf_addr, "-format=json"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return {}
    return {m["name"]: m for m in json.loads(out.stdout)["members"]}

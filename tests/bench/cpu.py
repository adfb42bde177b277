#!/usr/bin/python3
"""CPU time of the other programs on the machine, for flagging disturbed benchmark runs.

    cpu.py snap FILE            write {pid: utime+stime ticks} of every process to FILE
    cpu.py other A B PID...     "U K": seconds of CPU that user processes other than PID...
                                (U) and kernel threads (K: e.g. block I/O completions, which
                                mostly serve the benchmarked server's own writes) used between
                                snapshots A and B; a process that was not in A counts from 0.
                                Short-lived processes that started and ended between the
                                snapshots are not seen.
"""
import json
import os
import sys

HZ = os.sysconf("SC_CLK_TCK")


def stats():
    """(pid, comm, the fields after the comm) of every process, from /proc/PID/stat."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        yield d, s[s.index("(") + 1:s.rindex(")")], s.rsplit(")", 1)[1].split()


def snap():
    # fields[1] is the ppid: kernel threads are kthreadd (2) and its children.
    return {d: [int(fields[11]) + int(fields[12]), d == "2" or fields[1] == "2"]  # utime + stime
            for d, _, fields in stats()}


def other(a, b, skip):
    """(user, kernel): seconds of CPU that user processes not in skip (pids as strings) and
    kernel threads used between snapshots a and b."""
    user = kern = 0
    for p, (t, kthread) in b.items():
        if p in skip:
            continue
        d = max(0, t - a.get(p, [0])[0])
        if kthread:
            kern += d
        else:
            user += d
    return user / HZ, kern / HZ


def main():
    if sys.argv[1] == "snap":
        with open(sys.argv[2], "w") as f:
            json.dump(snap(), f)
    elif sys.argv[1] == "other":
        with open(sys.argv[2]) as f:
            a = json.load(f)
        with open(sys.argv[3]) as f:
            b = json.load(f)
        print("%.3f %.3f" % other(a, b, set(sys.argv[4:]) | {str(os.getpid()), str(os.getppid())}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

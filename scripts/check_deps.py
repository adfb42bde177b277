#!/usr/bin/python3
"""make check-deps: the module arrows of DESIGN.md 2.1, checked on the sources and the archives.

Arrows: admin -> consensus -> zone -> base; consensus -> rpc -> base; admin -> resolver -> zone;
admin -> gossip -> base; admin/api -> admin/http -> base. admin/api is part of the composition
root and may also call consensus, zone and rpc. Nothing calls up.

Rules, each with a planted case in tests/integration/test_check_deps.py:
  arrow     a file of module M includes a header of module T that M may not depend on;
  public    ... or a header of an allowed T other than T's public header (internal.h ...);
  third     a third-party header outside the module that owns it (DESIGN.md 2.1);
  test      tests/unit/M/ includes a module above M (or a test helper of one): a unit test
            sees only its own module (internals too) and the public headers below it;
  calls-up  an archive (build/lib<module>.a) references a function or object defined in the
            archive of a module it may not depend on (nm), whatever the includes say;
  internal  an archive references another module's `prefix__name` internals (nm).
Every .c and .h under a module folder is scanned, recursively; a quoted include resolves like
the compiler's: next to the including file first (so "../zone/zone.h" is zone's header), then
from the tree's root (-I.), and for tests from tests/unit (-Itests/unit). A folder inside a
module belongs to the deepest module folder that holds it (admin/http is not admin).
tests/fuzz/ harnesses drive decoders directly: they may include any module header.

Usage: check_deps.py [--root DIR] [--build DIR | --no-nm]
"""
import os
import re
import subprocess
import sys

ALLOW = {
    "base": {"base"},
    "zone": {"base"},
    "rpc": {"base"},
    "consensus": {"zone", "rpc", "base"},
    "resolver": {"zone", "base"},
    "gossip": {"base"},
    "admin/http": {"base"},
    "admin/api": {"admin/http", "consensus", "zone", "rpc", "base"},
    "admin": {"admin/api", "admin/http", "consensus", "resolver", "gossip", "zone", "rpc",
              "base"},
}
HEADER = {m: "%s/%s.h" % (m, m.split("/")[-1]) for m in ALLOW if m != "admin"}
HEADER["admin"] = None  # the composition root has no public header
# Third-party headers and the modules that may include them (DESIGN.md 2.1). ldns: zone where it
# serves, and resolver's relay (it re-truncates upstream answers), besides tests. uv.h: every
# module that runs on a loop; zone and base are pure.
THIRD = {
    "lmdb.h": {"zone"},
    "ldns": {"zone", "resolver"},
    "raft.h": {"consensus"},
    "raft": {"consensus"},
    "unbound.h": {"resolver"},
    "llhttp.h": {"admin/http"},
    "msgpack.h": {"gossip"},
    "msgpack": {"gossip"},
    "jansson.h": {"admin", "admin/api"},
    "cmocka.h": set(),
    "nettle": {"consensus", "rpc", "gossip"},
    "uv.h": {"consensus", "rpc", "resolver", "gossip", "admin/http", "admin/api", "admin"},
}
# Tests may also use cmocka, check answers with ldns and read JSON fixtures with jansson.
TEST_THIRD = {"cmocka.h", "ldns", "jansson.h"}
ORDER = sorted(ALLOW, key=lambda m: -len(m))  # deepest folder first
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def module_of(rel):
    for m in ORDER:
        if rel == m or rel.startswith(m + "/"):
            return m
    return None


def third_key(path):
    top = path.split("/")[0]
    if path in THIRD:
        return path
    if "/" in path and top in THIRD:
        return top
    return None


def resolve(root, src_dir, path, extra_dirs):
    """The included file's path relative to root, as the compiler would find it (or None)."""
    for d in [src_dir] + extra_dirs:
        cand = os.path.normpath(os.path.join(d, path))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def scan_file(root, rel, problems):
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        text = f.read()
    src_dir = os.path.dirname(rel)
    is_unit = rel.startswith("tests/unit/")
    is_fuzz = rel.startswith("tests/fuzz/")
    if is_unit:
        parts = rel.split("/")[2:-1]
        mod = module_of("/".join(parts)) if parts else None
        if mod is None:
            problems.append("test: %s is not under tests/unit/<module>/" % rel)
            return
    elif is_fuzz:
        mod = None
    else:
        mod = module_of(rel)
    extra = [".", "tests/unit"] if (is_unit or is_fuzz) else ["."]
    for m in INCLUDE.finditer(text):
        kind, path = m.group(1), m.group(2)
        target_rel = resolve(root, src_dir, path, extra) if kind == '"' else None
        if target_rel is None:
            tk = third_key(path)
            if tk is None or is_fuzz:
                continue
            owners = THIRD[tk]
            if is_unit and tk in TEST_THIRD:
                continue
            if mod not in owners:
                problems.append("third: %s includes <%s>: owned by %s, not %s"
                                % (rel, path, ", ".join(sorted(owners)), mod))
            continue
        if is_fuzz:
            continue
        if target_rel.startswith("tests/unit/"):
            if not is_unit:
                problems.append("test: %s includes the test helper %s" % (rel, target_rel))
                continue
            tparts = target_rel.split("/")[2:-1]
            tmod = module_of("/".join(tparts)) if tparts else None
            if tmod != mod and tmod not in ALLOW[mod]:
                problems.append("test: %s includes %s: a %s test may not use %s's helpers"
                                % (rel, target_rel, mod, tmod))
            continue
        tmod = module_of(target_rel)
        if tmod is None or tmod == mod:
            continue
        if tmod not in ALLOW[mod]:
            rule = "test" if is_unit else "arrow"
            problems.append("%s: %s includes %s: %s may not depend on %s"
                            % (rule, rel, target_rel, mod, tmod))
        elif target_rel != HEADER[tmod]:
            problems.append("public: %s includes %s: only %s's public header %s may be included"
                            % (rel, target_rel, tmod, HEADER[tmod]))


def scan_sources(root, problems):
    tops = set(m.split("/")[0] for m in ALLOW) | {"tests/unit", "tests/fuzz"}
    for top in sorted(tops):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith((".c", ".h")):
                    scan_file(root, os.path.relpath(os.path.join(dirpath, fn), root), problems)


def archive_of(build, mod):
    return os.path.join(build, "lib%s.a" % mod.replace("/", "_"))


def nm_symbols(path):
    out = subprocess.run(["nm", "-g", "--defined-only", path], capture_output=True, text=True,
                         check=True).stdout
    defined = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            defined.add(f[2])
    out = subprocess.run(["nm", "-g", "--undefined-only", path], capture_output=True,
                         text=True, check=True).stdout
    undefined = set(line.split()[-1] for line in out.splitlines()
                    if line.strip() and not line.endswith(":"))
    return defined, undefined


def has_sources(root, mod):
    d = os.path.join(root, mod)
    return os.path.isdir(d) and any(f.endswith(".c") for f in os.listdir(d))


def scan_archives(root, build, problems):
    defs, undefs = {}, {}
    for mod in ALLOW:
        path = archive_of(build, mod)
        if os.path.isfile(path):
            defs[mod], undefs[mod] = nm_symbols(path)
        elif has_sources(root, mod):
            problems.append("calls-up: %s is missing: build first (make all)" % path)
    owner = {}
    for mod, syms in defs.items():
        for s in syms:
            owner.setdefault(s, mod)
    internal = re.compile(r"^[a-z]+__[A-Za-z0-9_]")
    for mod, syms in sorted(undefs.items()):
        for s in sorted(syms):
            t = owner.get(s)
            if t is None or t == mod:
                continue
            if t not in ALLOW[mod]:
                problems.append("calls-up: %s uses %s, defined in %s: %s may not depend on %s"
                                % (archive_of(build, mod), s, t, mod, t))
            elif internal.match(s):
                problems.append("internal: %s uses %s, an internal of %s"
                                % (archive_of(build, mod), s, t))


def main(argv):
    root, build, nm = ".", None, True
    i = 1
    while i < len(argv):
        if argv[i] == "--root":
            root = argv[i + 1]
            i += 2
        elif argv[i] == "--build":
            build = argv[i + 1]
            i += 2
        elif argv[i] == "--no-nm":
            nm = False
            i += 1
        else:
            print("usage: check_deps.py [--root DIR] [--build DIR | --no-nm]", file=sys.stderr)
            return 2
    problems = []
    scan_sources(root, problems)
    if nm:
        scan_archives(root, build or os.path.join(root, "build"), problems)
    for p in problems:
        print("check-deps: " + p)
    if problems:
        return 1
    print("check-deps: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

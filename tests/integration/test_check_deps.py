"""make check-deps: every rule of scripts/check_deps.py fails on a case planted in a copy of the
tree (or in a small tree of its own, for the archive rules), and the real tree passes."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "check_deps.py")
PY = "/usr/bin/python3"


def run(root, *args):
    p = subprocess.run([PY, SCRIPT, "--root", root] + list(args), capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture
def tree(tmp_path):
    """A copy of the tree's sources (what git tracks under the module folders and tests)."""
    files = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True,
                           check=True, timeout=60).stdout.split()
    for f in files:
        if f.endswith((".c", ".h")):
            dst = tmp_path / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(ROOT, f), dst)
    return tmp_path


def plant(tree, rel, text):
    p = tree / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_the_tree_passes(tree):
    rc, out = run(str(tree), "--no-nm")
    assert rc == 0, out


@pytest.mark.parametrize("rel,text,rule", [
    # zone is below consensus: it may not include it
    ("zone/planted.c", '#include "consensus/consensus.h"\n', "arrow"),
    # a subfolder is scanned, and a relative include is resolved like the compiler does
    ("zone/sub/planted.c", '#include "../../consensus/consensus.h"\n', "arrow"),
    # the resolver never reaches consensus
    ("resolver/planted.h", '#include "consensus/consensus.h"\n', "arrow"),
    # admin/http knows nothing of Consul or the catalog
    ("admin/http/planted.c", '#include "zone/zone.h"\n', "arrow"),
    # an allowed module, but its private header
    ("consensus/planted.c", '#include "zone/internal.h"\n', "public"),
    ("admin/api/planted.c", '#include "../http/internal.h"\n', "public"),
    # third-party headers stay in their module
    ("consensus/planted.c", "#include <lmdb.h>\n", "third"),
    ("zone/planted.c", "#include <uv.h>\n", "third"),
    ("admin/api/planted.c", "#include <llhttp.h>\n", "third"),
    # a unit test sees its module and the public headers below it, nothing above
    ("tests/unit/zone/test_planted.c", '#include "consensus/consensus.h"\n', "test"),
    ("tests/unit/zone/test_planted.c", '#include "consensus/fixture.h"\n', "test"),
    ("tests/unit/resolver/test_planted.c", '#include "zone/internal.h"\n', "public"),
    ("tests/unit/planted.c", '#include "base/base.h"\n', "test"),
])
def test_planted_include_fails(tree, rel, text, rule):
    plant(tree, rel, text)
    rc, out = run(str(tree), "--no-nm")
    assert rc == 1, out
    assert "check-deps: %s: " % rule in out, out
    assert rel in out, out


def archives(tmp_path, defs):
    """A tree of tiny modules, each an archive built from one C file."""
    build = tmp_path / "build"
    build.mkdir()
    for mod, src in defs.items():
        plant(tmp_path, "%s/%s.c" % (mod, mod.replace("/", "_")), src)
        obj = build / (mod.replace("/", "_") + ".o")
        subprocess.run(["cc", "-c", "-o", str(obj), str(tmp_path / mod / (mod.replace("/", "_") + ".c"))],
                       check=True, timeout=60)
        subprocess.run(["ar", "rcs", str(build / ("lib%s.a" % mod.replace("/", "_"))), str(obj)],
                       check=True, timeout=60)
    return str(build)


GOOD = {
    "base": "int base_x(void) { return 1; }\n",
    "zone": "int base_x(void);\nint zone__y(void) { return base_x(); }\n"
            "int zone_y(void) { return zone__y(); }\n",
    "consensus": "int zone_y(void);\nint cons_z(void) { return zone_y(); }\n",
}


def test_archives_that_follow_the_arrows_pass(tmp_path):
    build = archives(tmp_path, GOOD)
    rc, out = run(str(tmp_path), "--build", build)
    assert rc == 0, out


def test_a_call_up_fails_whatever_the_includes_say(tmp_path):
    # zone declares consensus's function itself (no include to catch) and calls it
    defs = dict(GOOD, zone="int cons_z(void);\nint zone_y(void) { return cons_z(); }\n")
    build = archives(tmp_path, defs)
    rc, out = run(str(tmp_path), "--build", build)
    assert rc == 1, out
    assert "check-deps: calls-up: " in out and "cons_z" in out, out


def test_another_modules_internals_fail(tmp_path):
    defs = dict(GOOD, consensus="int zone__y(void);\nint cons_z(void) { return zone__y(); }\n")
    build = archives(tmp_path, defs)
    rc, out = run(str(tmp_path), "--build", build)
    assert rc == 1, out
    assert "check-deps: internal: " in out and "zone__y" in out, out


def test_a_missing_archive_fails(tmp_path):
    build = archives(tmp_path, GOOD)
    os.remove(os.path.join(build, "libzone.a"))
    rc, out = run(str(tmp_path), "--build", build)
    assert rc == 1, out
    assert "libzone.a is missing" in out, out

"""Where things are: the repository and the binary under test.

HERALD is read at call time by the helpers that start agents (paths.HERALD), so a test can
run another build with monkeypatch.setattr(paths, "HERALD", ...)."""
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# By default the ASan/UBSan build, so the real flows run under the sanitizers.
HERALD = os.environ.get("HERALD_BIN", os.path.join(ROOT, "build", "asan", "herald"))


def readme_snippet(name):
    """The fenced code block that follows `<!-- snippet: NAME -->` in the README."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    marker = "<!-- snippet: %s -->" % name
    at = text.index(marker) + len(marker)
    start = text.index("```", at)
    start = text.index("\n", start) + 1
    end = text.index("```", start)
    return text[start:end]

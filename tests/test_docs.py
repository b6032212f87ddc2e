"""The documentation builds without a warning, and covers every endpoint."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "pyfarm-docs"


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
         "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def documented_endpoints():
    """(METHOD, path) pairs documented with httpdomain directives."""
    found = set()
    for page in DOCS.glob("*.rst"):
        for method, path in re.findall(
                r"^\.\. http:(\w+):: (\S+)", page.read_text(), re.M):
            found.add((method.upper(), normalise(path)))
    return found


def normalise(path):
    """Make Flask's and the docs' placeholders look alike."""
    return re.sub(r"\((?:\w+:)?\w+\)|<(?:\w+:)?\w+>", "{}", path)


def test_every_api_endpoint_is_documented():
    from pyfarm.master.app import create_app

    app = create_app({"check_schema": False,
                      "database_url": "sqlite://",
                      "data_dir": str(ROOT / ".pytest_cache" / "docs-app")})
    documented = documented_endpoints()
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (method, normalise(rule.rule)) not in documented:
                missing.append(f"{method} {rule.rule}")
    assert not missing, "undocumented endpoints: " + ", ".join(missing)

"""The image: linted by hadolint, built from files the context really holds, running the CLI the tests run."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from test_deploy.conftest import run, tool
from test_deploy.exprs import REPO
from fixtures.processes import HOOKSTREAM

DOCKERFILE = REPO / "deploy/docker/Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint_with_no_findings():
    result = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD hookstream ingest\n")
    result = run([tool("hadolint"), "--no-color", "--format", "json", str(bad)])
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert result.returncode != 0 and {"DL3007", "DL3013", "DL3025"} <= codes


def test_image_is_multi_stage_slim_and_runs_as_a_numeric_non_root_user():
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) >= 2 and all(" AS " in f.upper() for f in froms)
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert "slim" in args["PYTHON_IMAGE"]
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    (user,) = [a for w, a in final if w == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    assert [a for w, a in final if w == "COPY"] == ["--from=build /opt/hookstream /opt/hookstream"]


def test_image_entrypoint_is_the_hookstream_cli_the_tests_run():
    steps = dict((w, a) for w, a in instructions() if w in ("ENTRYPOINT", "CMD"))
    assert json.loads(steps["ENTRYPOINT"]) == ["hookstream"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hookstream"] == "hookstream.cli:main"
    assert HOOKSTREAM[1:] == ["-m", "hookstream.cli"], "tests start `python -m hookstream.cli`, the same main"
    assert json.loads(steps["CMD"])[0] == "ingest"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)) or \
                fnmatch.fnmatch(path, pattern.replace("**/", "*/")):
            ignored = not negate
    return ignored


def test_everything_the_build_copies_is_in_the_build_context():
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    sources = []
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources, "no COPY from the build context"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for inside in ("hookstream/cli.py", "ingest/app.py", "processors/runtime.py", "deploy/kafka/pom.xml"):
        assert not _ignored(inside, patterns), f"{inside} would be missing from the build"
    for outside in ("tests/conftest.py", ".venv/bin/python", ".git/HEAD", "deploy/k8s/base/receiver.yaml",
                    "ingest/__pycache__/app.cpython-311.pyc"):
        assert _ignored(outside, patterns), f"{outside} would be sent to the build"


def test_the_image_copies_every_folder_the_distribution_maps():
    """A room added to pyproject's package-dir must reach the image too, or the installed CLI cannot import it."""
    mapped = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    copied = {args.split()[0].rstrip("/") for word, args in instructions()
              if word == "COPY" and not args.startswith("--from")}
    assert mapped <= copied, f"mapped but not copied into the image: {sorted(mapped - copied)}"
    for folder in mapped:
        assert not _ignored(f"{folder}/__init__.py", patterns), f"{folder}/ is excluded by .dockerignore"

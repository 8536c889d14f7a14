"""The Dockerfile's inner loop: dependencies in a layer of their own, sources last.

A layer is rebuilt when anything it was given changes. So the step that
installs the dependencies must be given only the dependency list and the
pins, and every source file must arrive after it: an edit to the code then
reuses the dependency layer, and pip's cache (a BuildKit cache mount, never a
layer) spares the downloads when a pin changes. The image fixture replays the
builder in this order (tests/images/conftest.py), so each step is also shown
to work with only what it was given.
"""

from __future__ import annotations

from tests.support import dockerfile
from tests.support.paths import REPO_ROOT

STAGES = dockerfile.parse(REPO_ROOT / "Dockerfile")
BUILDER = STAGES[0]
SOURCE_ROOTS = {"src/", "api/", "worker/", "operator/"}


def steps() -> list[tuple[str, str]]:
    return [(keyword, rest) for keyword, rest in BUILDER.instructions if keyword in {"COPY", "RUN"}]


def installs(rest: str) -> bool:
    return "pip install" in dockerfile.run_flags(rest)[1]


def test_dependencies_install_from_the_pins_before_any_source_arrives() -> None:
    copied: set[str] = set()
    first_install = None
    for keyword, rest in steps():
        if keyword == "COPY":
            sources, _ = dockerfile.copy_sources(rest)
            copied.update(sources)
        elif installs(rest):
            first_install = (rest, set(copied))
            break
    assert first_install is not None, "no pip install in the builder stage"
    command, given = first_install
    assert given == {"pyproject.toml", "constraints.txt"}, given
    assert "-c constraints.txt" in command
    assert "-r requirements.txt" in command


def test_sources_arrive_last_and_their_layer_installs_only_the_package() -> None:
    order = steps()
    source_copies = [
        i
        for i, (keyword, rest) in enumerate(order)
        if keyword == "COPY" and set(dockerfile.copy_sources(rest)[0]) & SOURCE_ROOTS
    ]
    assert {
        root for i in source_copies for root in dockerfile.copy_sources(order[i][1])[0]
    } == SOURCE_ROOTS
    install_steps = [
        i for i, (keyword, rest) in enumerate(order) if keyword == "RUN" and installs(rest)
    ]
    assert len(install_steps) == 2
    dependencies, package = install_steps
    assert dependencies < min(source_copies), "a source file arrives before the dependencies"
    assert package > max(source_copies)
    package_command = dockerfile.run_flags(order[package][1])[1]
    assert "--no-deps" in package_command
    assert "pip check" in package_command, "a dependency the pins miss must fail the build"


def test_pip_keeps_its_cache_in_a_buildkit_cache_mount_not_in_a_layer() -> None:
    for keyword, rest in steps():
        if keyword == "RUN" and installs(rest):
            flags, _ = dockerfile.run_flags(rest)
            assert "--mount=type=cache,target=/root/.cache/pip" in flags, rest
    assert "PIP_NO_CACHE_DIR" not in BUILDER.env, "the cache mount is pip's cache"
    # BuildKit syntax for the mount; the runtime stage takes only the venv.
    assert (REPO_ROOT / "Dockerfile").read_text().startswith("# syntax=docker/dockerfile:1")
    runtime = STAGES[-1]
    copies = [rest for keyword, rest in runtime.instructions if keyword == "COPY"]
    assert copies == [f"--from={BUILDER.name} {dockerfile.IMAGE_VENV} {dockerfile.IMAGE_VENV}"]


def test_run_flags_are_split_from_the_command() -> None:
    flags, command = dockerfile.run_flags(
        "--mount=type=cache,target=/root/.cache/pip --network=none pip install ."
    )
    assert flags == ["--mount=type=cache,target=/root/.cache/pip", "--network=none"]
    assert command == "pip install ."
    assert dockerfile.copy_sources("--chown=1:1 a b dest/") == (["a", "b"], "dest/")

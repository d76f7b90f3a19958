"""Regenerate ``batch_image/constraints.txt``: the exact versions of the image's dependencies.

Run after changing ``pyproject.toml`` dependencies, in the environment the tests pass in::

    python -m infra.tooling.image_pins

It walks the project's runtime requirements (no extras) and pins every installed
distribution they pull in, so the image (built by ``infra/batch_compute/``) installs the
tested set.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

from infra import REPO_ROOT

OUT = REPO_ROOT / "batch_image" / "constraints.txt"
HEADER = (
    "# Exact versions of the container's dependencies (the tested set).\n"
    "# Regenerate with `python -m infra.tooling.image_pins` after changing pyproject.toml.\n"
)


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def runtime_closure(project: str = "synapse-pipelines") -> dict[str, str]:
    """Installed version of every distribution the project's runtime requirements pull in."""
    pins: dict[str, str] = {}
    todo = [
        Requirement(r)
        for r in metadata.requires(project) or []
        if not Requirement(r).marker or Requirement(r).marker.evaluate({"extra": ""})
    ]
    while todo:
        req = todo.pop()
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform
        name = _normal(req.name)
        if name in pins and not req.extras:
            continue
        pins[name] = dist.version
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            wanted = ["", *sorted(req.extras)]
            if sub_req.marker is None or any(
                sub_req.marker.evaluate({"extra": extra}) for extra in wanted
            ):
                todo.append(sub_req)
    return dict(sorted(pins.items()))


def main() -> None:
    """Write the pins of the installed runtime closure to :data:`OUT`."""
    pins = runtime_closure()
    OUT.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in pins.items()))
    print(f"{len(pins)} pins written to {OUT}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks that every dependency of every workspace package takes its version from
`[workspace.dependencies]` (root Cargo.toml), so each version is pinned once.

A dependency passes when it is `name.workspace = true` / `name = { workspace = true, ... }`, or a
`path` dependency on another package of this repository. Prints each offender and exits 1.
"""
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tables(manifest):
    """Yields (section name, dependency table) for every dependency table of a manifest."""
    for kind in ("dependencies", "dev-dependencies", "build-dependencies"):
        if kind in manifest:
            yield kind, manifest[kind]
    for target, spec in manifest.get("target", {}).items():
        for kind in ("dependencies", "dev-dependencies", "build-dependencies"):
            if kind in spec:
                yield f"target.{target}.{kind}", spec[kind]


def main():
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = ["."] + root["workspace"]["members"]
    pinned = root["workspace"].get("dependencies", {})
    problems = []
    for member in members:
        path = ROOT / member / "Cargo.toml"
        manifest = tomllib.loads(path.read_text())
        for section, deps in tables(manifest):
            for name, spec in deps.items():
                where = f"{path.relative_to(ROOT)} [{section}] {name}"
                if isinstance(spec, dict) and spec.get("workspace") is True:
                    if name not in pinned and spec.get("package", name) not in pinned:
                        problems.append(f"{where}: not in [workspace.dependencies]")
                elif isinstance(spec, dict) and "path" in spec and "version" not in spec:
                    continue
                else:
                    problems.append(f"{where}: pin its version in [workspace.dependencies] "
                                    f"and write `{name}.workspace = true`")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"manifests: every dependency of {len(members)} packages is pinned in [workspace.dependencies]")


if __name__ == "__main__":
    main()

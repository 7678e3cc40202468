#!/usr/bin/env python3
"""Replays the Dockerfile's build stage without a container runtime (none runs here).

On a clean clone of HEAD (the build context, less what .dockerignore leaves out), the build
stage's instructions run as Docker would run them: WORKDIR and COPY lay out a root folder of
their own, ARG and ENV set variables, RUN runs under bash (BuildKit's --mount flags are caches
and are dropped). ARG OUT points into that folder, so nothing is written outside it. Any other
instruction fails the replay, so the Dockerfile cannot grow a step this check skips. The image
must be built with the toolchain the machine has: the FROM tag's Rust version must be rustc's.

Then the runtime stage's COPY --from=build sources must exist, and the binary must run.

Usage: .ci/image.py [--keep]   (prints the binary's size and the build's time)
"""

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instructions(dockerfile):
    """(keyword, argument text) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in open(dockerfile, encoding="utf-8"):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def stages(steps):
    """Instructions grouped by stage: [(name, from image, steps)]."""
    result = []
    for keyword, arg in steps:
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", arg, re.IGNORECASE)
            if not m:
                sys.exit(f"image: cannot read FROM {arg!r}")
            result.append((m.group(2), m.group(1), []))
        elif result:
            result[-1][2].append((keyword, arg))
    return result


def ignored(rel, patterns):
    parts = rel.split("/")
    for p in patterns:
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), p):
                return True
    return False


def check_toolchain(image):
    m = re.match(r"rust:(\d+\.\d+)", image)
    if not m:
        sys.exit(f"image: the build stage is FROM {image}, not a rust image")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout
    if f"rustc {m.group(1)}." not in rustc:
        sys.exit(f"image: FROM {image} but this machine has {rustc.strip()}")
    print(f"image: FROM {image} matches {rustc.strip()}")


def main():
    keep = "--keep" in sys.argv
    work = tempfile.mkdtemp(prefix="image-replay-")
    try:
        context = os.path.join(work, "context")
        subprocess.run(["git", "clone", "--quiet", "--no-local", REPO, context], check=True)
        patterns = []
        ignore_file = os.path.join(context, ".dockerignore")
        if os.path.exists(ignore_file):
            patterns = [l.strip().strip("/") for l in open(ignore_file)
                        if l.strip() and not l.startswith("#")]
        all_stages = stages(instructions(os.path.join(context, "Dockerfile")))
        build = [s for s in all_stages if s[0] == "build"]
        if not build:
            sys.exit("image: no stage named build")
        _, image, steps = build[0]
        check_toolchain(image)

        root = os.path.join(work, "root")
        os.makedirs(root)
        env = dict(os.environ)
        cwd = root

        def inside(path):
            return os.path.join(root, path.lstrip("/")) if path.startswith("/") else os.path.join(cwd, path)

        started = time.monotonic()
        for keyword, arg in steps:
            if keyword == "WORKDIR":
                cwd = inside(arg)
                os.makedirs(cwd, exist_ok=True)
            elif keyword == "ARG":
                name, _, default = arg.partition("=")
                value = default
                if name == "OUT":
                    value = inside(default)
                env[name] = value
            elif keyword == "ENV":
                name, _, value = arg.partition("=")
                env[name] = value
            elif keyword == "COPY":
                args = shlex.split(arg)
                if any(a.startswith("--") for a in args):
                    sys.exit(f"image: COPY {arg}: flags are not replayed in the build stage")
                *sources, dest = args
                dest = inside(dest)
                for src in sources:
                    src_path = os.path.normpath(os.path.join(context, src))
                    for dirpath, dirnames, filenames in os.walk(src_path):
                        rel_dir = os.path.relpath(dirpath, context)
                        dirnames[:] = [d for d in dirnames
                                       if not ignored(os.path.normpath(os.path.join(rel_dir, d)), patterns)]
                        for f in filenames:
                            rel = os.path.normpath(os.path.join(rel_dir, f))
                            if ignored(rel, patterns):
                                continue
                            under = os.path.relpath(os.path.join(dirpath, f), src_path)
                            target = os.path.join(dest, under) if os.path.isdir(src_path) or dest.endswith("/") \
                                else dest
                            os.makedirs(os.path.dirname(target), exist_ok=True)
                            shutil.copy2(os.path.join(dirpath, f), target)
            elif keyword == "RUN":
                command = re.sub(r"--mount=\S+\s*", "", arg)
                print(f"image: RUN {command}", flush=True)
                subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, check=True)
            else:
                sys.exit(f"image: {keyword} in the build stage is not replayed: teach .ci/image.py")
        elapsed = time.monotonic() - started

        # What the runtime stage takes from the build stage must be there.
        for name, _, runtime_steps in all_stages:
            for keyword, arg in runtime_steps:
                if keyword == "COPY" and "--from=build" in arg:
                    src = [a for a in shlex.split(arg) if not a.startswith("--")][0]
                    if not os.path.exists(inside(src)):
                        sys.exit(f"image: the runtime stage copies {src}, which the build stage did not make")
        if "OUT" not in env:
            sys.exit("image: the build stage has no ARG OUT")
        binary = os.path.join(env["OUT"], "segment-connections")
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
        size = os.path.getsize(binary)
        print(f"image: build stage replayed in {elapsed:.0f} s; {out.strip()}; binary {size / 1e6:.1f} MB")
    finally:
        if keep:
            print(f"image: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

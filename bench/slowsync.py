"""Build the slow-fsync LD_PRELOAD shim (bench/slowsync.c) and hand out its environment.

    import slowsync
    subprocess.run([...], env=slowsync.env(30))   # +30 ms per fsync/fdatasync

The shared object is compiled with gcc on first use into
~/.cache/annotator-bench/ (or a temporary folder when that is not writable),
keyed by a hash of the source, so an edited shim is rebuilt. Linux/glibc only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "slowsync.c"
CACHE_DIR = Path.home() / ".cache" / "annotator-bench"


class ShimError(RuntimeError):
    """The shim could not be built (no gcc, or it failed)."""


def build(cache_dir: Path | None = None, source: Path = SOURCE) -> Path:
    """Return the path of a compiled LD_PRELOAD shim (this one by default), compiling it if needed."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    candidates = [cache_dir] if cache_dir else [CACHE_DIR, Path(tempfile.gettempdir()) / "annotator-bench"]
    last_error: Exception | None = None
    for folder in candidates:
        target = folder / f"{source.stem}-{digest}.so"
        if target.exists():
            return target
        if gcc is None:
            raise ShimError("gcc not found: install it to emulate slow fsync (apt-get install gcc)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # build under a unique name, then rename: concurrent builds never see half a file
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(fd)
        except OSError as exc:
            last_error = exc
            continue
        try:
            subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", tmp, str(source), "-ldl"],
                           check=True, capture_output=True, text=True)
            os.replace(tmp, target)
            return target
        except subprocess.CalledProcessError as exc:
            raise ShimError(f"building {source} failed:\n{exc.stderr}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise ShimError(f"no writable folder to build the shim in: {last_error}")


def env(delay_ms: float, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for subprocess.* that adds `delay_ms` to every fsync/fdatasync."""
    out = dict(os.environ if base is None else base)
    if delay_ms <= 0:
        return out
    shim = str(build())
    preload = out.get("LD_PRELOAD")
    out["LD_PRELOAD"] = f"{shim} {preload}" if preload else shim
    out["FSYNC_DELAY_US"] = str(int(delay_ms * 1000))
    return out


if __name__ == "__main__":  # quick self-check: time one fdatasync with and without the shim
    import sys

    probe = ("import os, tempfile, time; f = tempfile.TemporaryFile(); f.write(b'x'); f.flush(); "
             "t = time.perf_counter(); os.fdatasync(f.fileno()); print(f'{(time.perf_counter() - t) * 1000:.1f}')")
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    slow = subprocess.run([sys.executable, "-c", probe], env=env(delay), capture_output=True, text=True,
                          check=True).stdout.strip()
    print(f"shim: {build()}")
    print(f"fdatasync without shim: {plain} ms; with +{delay:g} ms shim: {slow} ms")

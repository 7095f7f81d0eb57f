"""What the runner hands each benchmark: the repeat counts, a scratch folder and the shared sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.sandbox_process import SandboxProcess


@dataclass
class BenchContext:
    repeats: int
    warmup: int
    workdir: Path
    _sandbox: SandboxProcess | None = field(default=None, repr=False)

    def sandbox(self) -> SandboxProcess:
        """The run's sandbox (default seed), started in its own process on first use, stopped by ``close``.

        Benchmarks share it: each one sets up the data it needs on top of the seed and resets the knobs
        it changed."""
        if self._sandbox is None:
            print("starting a sandbox in a separate process ...", flush=True)
            self._sandbox = SandboxProcess(self.workdir / "sandbox").start()
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None

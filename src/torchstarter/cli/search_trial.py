"""The process of one search trial: `torchstarter train`, whose thread count the search
can raise. search/runner.py starts it by module name (python -m), never by importing it.

With 3 trials on 2 slots, the third runs alone once the second ends; keeping it on one
thread would leave a core idle for a whole trial. So when a slot frees up and no trial
is left to start, the search writes a larger count into .search_threads in the trial
folder and sends SIGUSR2; the handler applies it between two torch operations.
SIGUSR2 would kill a process without a handler, so the search launches the child with
the signal blocked, and it is unblocked here once the handler is in place.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from torchstarter.search.folders import THREADS_FILE


def _model_dir(argv: Sequence[str]) -> Path:
    for flag in ("--model-dir", "--model_dir"):
        if flag in argv:
            return Path(argv[list(argv).index(flag) + 1])
    raise SystemExit(f"{__name__}: expected train --model-dir DIR ...")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    folder = _model_dir(argv)
    # Imported before the handler can run: a handler must never run inside torch's import.
    import torch

    import torchstarter
    from torchstarter.cli.main import main as cli_main

    def apply_threads(signum: int, frame: FrameType | None) -> None:
        try:
            threads = int((folder / THREADS_FILE).read_text())
        except (OSError, ValueError):
            return
        torch.set_num_threads(max(1, threads))
        # os.write, not print: a handler may interrupt a print of the main code.
        os.write(sys.stdout.fileno(), f"search: a slot is free; now {torch.get_num_threads()} "
                                      f"threads\n".encode())

    signal.signal(signal.SIGUSR2, apply_threads)
    # The search stops its trials with SIGINT. A search started in the background ignores
    # SIGINT itself, and its children inherit that; a trial obeys its search regardless.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})

    # run.json records the command as `python -m torchstarter train ...`, which is what runs.
    sys.argv = [str(Path(torchstarter.__file__).with_name("__main__.py")), *argv]
    try:
        return cli_main(argv)
    finally:
        # Python puts the default action (terminate) back while it shuts down, and a slot
        # freed by a trial ending at the same moment would then kill this finished one.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})


if __name__ == "__main__":
    raise SystemExit(main())

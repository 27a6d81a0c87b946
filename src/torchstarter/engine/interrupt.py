"""Stop a run cleanly on Ctrl-C, SIGTERM or SIGUSR1: finish the step, save, then exit.

SIGUSR1 is what batch schedulers are usually told to send some time before a job's
limit or preemption (SLURM: --signal=B:USR1@120), so it stops a run as SIGTERM does.
The first stop signal only sets a flag that the training loop reads after each
step; a second SIGINT raises KeyboardInterrupt at once, for a user who cannot wait.
A signal that was ignored when the run started (a job started in the background by a
shell, or under nohup, ignores SIGINT) stays ignored: whoever started the run asked
for that, and Ctrl-C in the terminal must not reach a job running behind it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequested(Exception):
    """Raised by the trainer once it has stopped between steps after a signal."""

    def __init__(self, signum: int, where: str):
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}")
        self.signum = signum
        self.where = where

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class GracefulStop:
    """Context manager that turns the first stop signal into a flag."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now
        if self.signum is None:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name}: finishing the current step and saving a "
                  f"resumable checkpoint (Ctrl-C again to quit at once)", flush=True)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

"""What a training pass shows while it runs: a progress bar with the running loss.

Reading the running loss waits for the device, so it happens only when a person can
see it: on the bar at most twice a second, in the debug log every save_summary_steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm import tqdm

log = logging.getLogger("torchstarter")
_REFRESH_SECONDS = 0.5


class PassProgress:
    def __init__(self, total: int, done: int, epoch: int, num_epochs: int, shown: bool,
                 running_loss: Callable[[], float], log_every: int):
        self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch}/{num_epochs}",
                        unit="samples", leave=False, disable=None if shown else True,
                        dynamic_ncols=True)
        self.epoch, self.running_loss, self.log_every = epoch, running_loss, log_every
        self._last_shown = time.monotonic()

    def step(self, step: int, examples: int) -> None:
        self.bar.update(examples)
        if step % self.log_every == 0 and log.isEnabledFor(logging.DEBUG):
            log.debug("epoch %d step %d: running loss %.4f", self.epoch, step,
                      self.running_loss())
        if not self.bar.disable and time.monotonic() - self._last_shown > _REFRESH_SECONDS:
            self.bar.set_postfix(loss=f"{self.running_loss():.4f}", refresh=False)
            self._last_shown = time.monotonic()

    def close(self) -> None:
        self.bar.close()

"""--requeue: put a SLURM job back in the queue once its run has saved where it stopped.

SLURM sends the signal chosen with `sbatch --signal` some time before a job's limit or
its preemption; train and search stop on it after saving (engine/interrupt.py). With
--requeue the process then asks SLURM to run the same batch script again, which must
therefore continue the run: train needs --restore auto, and a search continues by itself.
Only the job's process of rank 0 asks, once; the job's other processes just stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from torchstarter.errors import UserError

SCONTROL_TIMEOUT_S = 60


def requeue_job(requested: bool, command: str, restore: str | None = "auto") -> str | None:
    """The job id to requeue after a stop, checked before any work; None without --requeue."""
    if not requested:
        return None
    if restore != "auto":
        raise UserError(f"{command} --requeue: the requeued job reruns this same command, "
                        f"which must continue the run; add --restore auto")
    job = os.environ.get("SLURM_JOB_ID", "").strip()
    if not job:
        raise UserError(f"{command} --requeue: SLURM_JOB_ID is not set, so this is not a SLURM "
                        f"job; drop --requeue outside a batch job")
    if shutil.which("scontrol") is None:
        raise UserError(f"{command} --requeue: scontrol is not on PATH; load SLURM's tools "
                        f"(e.g. module load slurm) or drop --requeue")
    return job


def is_first_process() -> bool:
    """Rank 0 of a torchrun job, or a process started alone."""
    return os.environ.get("RANK", "0") == "0"


class RequeueFailed(UserError):
    """The run is saved but the job is not queued again: the user resubmits it."""

    exit_code = 1


def requeue(job: str) -> str:
    """Run `scontrol requeue JOB`; the one line to print about it."""
    retry = "the checkpoint is saved: submit the job again and it continues"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True,
                              timeout=SCONTROL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RequeueFailed(f"scontrol requeue {job} failed ({exc}); {retry}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit code {done.returncode}"
        raise RequeueFailed(f"scontrol requeue {job} failed ({why}); {retry}")
    return f"requeued SLURM job {job}: it continues from the saved checkpoint when it runs again"

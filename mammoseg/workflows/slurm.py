"""`mammoseg submit --to slurm`: the grid as a Slurm job array, then a report job that waits for it.

Two plain sbatch scripts, no dependency beyond Slurm's own tools: a job array with one task per run not
yet done (`--array=0-7%4`), each running `mammoseg ablate-task`, which finds its run from
SLURM_ARRAY_TASK_ID; and a job submitted with `--dependency=afterany:<array>` that runs `mammoseg
ablate-report` once every task has ended, however it ended.

Preemption and time limits: the array asks for `--requeue` and `--signal=B:USR1@N`. The batch shell
passes USR1 (and TERM) on to the task, whose training loop saves at the next batch and exits with
REQUEUE_EXIT; the shell then requeues the task (`scontrol requeue`), which resumes the same run folder.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mammoseg.core.atomic import write_text
from mammoseg.core.errors import MammosegError
from mammoseg.workflows.ablate import Plan
from mammoseg.workflows.cluster import Resources
from mammoseg.workflows.tasks import REQUEUE_EXIT, GridOptions, pending_tasks

SLURM_FOLDER = "slurm"
"""EXPERIMENT/slurm/: the job scripts and the jobs' logs."""
ARRAY_SCRIPT = "array.sbatch"
REPORT_SCRIPT = "report.sbatch"

_FORWARD_AND_REQUEUE = f"""\
task=$!
trap 'kill -USR1 "$task" 2>/dev/null' USR1
trap 'kill -TERM "$task" 2>/dev/null' TERM
while kill -0 "$task" 2>/dev/null; do wait "$task"; done
wait "$task"
status=$?
if [ "$status" -eq {REQUEUE_EXIT} ]; then
    echo "task $SLURM_ARRAY_TASK_ID saved its run and stopped: requeueing it"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
"""


def array_spec(indices: list[int], concurrency: int | None) -> str:
    """Slurm's --array value: [0, 1, 2, 5] and 2 -> "0-2,5%2"."""
    spans: list[list[int]] = []
    for index in sorted(set(indices)):
        if spans and spans[-1][1] == index - 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    text = ",".join(str(first) if first == last else f"{first}-{last}" for first, last in spans)
    return text + (f"%{concurrency}" if concurrency else "")


def _header(job_name: str, output: Path, resources: Resources, *, cpus: int, gpus: int,
            partition: str | None) -> list[str]:
    lines = [f"--job-name={job_name}", f"--output={output}", f"--chdir={Path.cwd()}", f"--cpus-per-task={cpus}"]
    lines += [f"--gres=gpu:{gpus}"] if gpus else []
    lines += [f"--mem={resources.mem}"] if resources.mem else []
    lines += [f"--time={resources.time}"] if resources.time else []
    lines += [f"--partition={partition}"] if partition else []
    return lines


def _script(options: list[str], preamble: str, resources: Resources, command: list[str], tail: str) -> str:
    """#SBATCH lines, the preamble (comments, a log line), the set-up line, the command, then `tail`, which
    takes over the command started in the background when there is one."""
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(o)}" for o in (*options, *resources.sbatch)), preamble]
    if resources.setup:
        lines.append(resources.setup)
    lines.append(shlex.join(command) + (" &" if tail else ""))
    return "\n".join(lines) + "\n" + tail


def array_script(plan: Plan, options: GridOptions, resources: Resources, indices: list[int]) -> str:
    """The job array: task i trains and evaluates run i of the plan; requeued when stopped by a signal."""
    folder = plan.folder.resolve() / SLURM_FOLDER
    header = _header(f"mammoseg-{plan.experiment}", folder / f"{plan.experiment}-%A_%a.out", resources,
                     cpus=resources.cpus, gpus=resources.gpus, partition=resources.partition)
    header[1:1] = [f"--array={array_spec(indices, resources.concurrency)}"]
    header += ["--open-mode=append", "--requeue", f"--signal=B:USR1@{resources.signal_seconds}"]
    preamble = (f"# Task i trains and evaluates run i of experiment {plan.experiment} (ablate-task reads\n"
               f"# SLURM_ARRAY_TASK_ID). USR1, {resources.signal_seconds} s before the time limit, or TERM: the task\n"
               f"# saves, exits with status {REQUEUE_EXIT} and is requeued; it then resumes the same run folder.\n"
               'echo "task $SLURM_ARRAY_TASK_ID (job $SLURM_JOB_ID) on $(hostname), attempt '
               '$(( ${SLURM_RESTART_COUNT:-0} + 1 ))"')
    command = ["mammoseg", "ablate-task", *options.arguments(absolute=True)]
    return _script(header, preamble, resources, command, _FORWARD_AND_REQUEUE)


def report_script(plan: Plan, options: GridOptions, resources: Resources) -> str:
    """The report job: the comparison of the runs that finished, and tasks.csv naming those that did not."""
    folder = plan.folder.resolve() / SLURM_FOLDER
    header = _header(f"mammoseg-{plan.experiment}-report", folder / f"{plan.experiment}-report-%j.out", resources,
                     cpus=1, gpus=0, partition=resources.report_partition or resources.partition)
    preamble = "# Runs once every task of the array has ended (submitted with --dependency=afterany:<array job>)."
    command = ["mammoseg", "ablate-report", *options.arguments(absolute=True)]
    return _script(header, preamble, resources, command, "")


@dataclass
class Submission:
    """What `submit` did: the scripts it wrote and the job ids Slurm gave (None: nothing to run / dry run)."""

    scripts: dict[Path, str]
    commands: list[str]
    array_job: str | None = None
    report_job: str | None = None


def submit(options: GridOptions, resources: Resources, *, dry_run: bool = False) -> Submission:
    """Write the job scripts into EXPERIMENT/slurm/ and submit them (only show them with `dry_run`); an
    array only of the runs not done, and the report job depending on it."""
    plan = options.plan()
    folder = plan.folder.resolve() / SLURM_FOLDER
    indices = pending_tasks(plan)
    scripts = {folder / REPORT_SCRIPT: report_script(plan, options, resources)}
    commands = [f"sbatch --parsable {folder / REPORT_SCRIPT}"]
    if indices:
        scripts = {folder / ARRAY_SCRIPT: array_script(plan, options, resources, indices)} | scripts
        commands = [f"sbatch --parsable {folder / ARRAY_SCRIPT}",
                    f"sbatch --parsable --dependency=afterany:<array job id> {folder / REPORT_SCRIPT}"]
    submission = Submission(scripts, commands)
    if dry_run:
        return submission
    if shutil.which("sbatch") is None:
        raise MammosegError("sbatch not found: submit from a Slurm login node (--dry-run shows the job scripts)")
    for path, text in scripts.items():
        write_text(path, text)
    if indices:
        submission.array_job = _sbatch([str(folder / ARRAY_SCRIPT)])
        dependency = [f"--dependency=afterany:{submission.array_job}"]
    else:
        dependency = []
    submission.report_job = _sbatch([*dependency, str(folder / REPORT_SCRIPT)])
    return submission


def _sbatch(arguments: list[str]) -> str:
    """Submit; the job id sbatch gives (`--parsable`: "id" or "id;cluster")."""
    result = subprocess.run(["sbatch", "--parsable", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise MammosegError(f"sbatch {' '.join(arguments)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]

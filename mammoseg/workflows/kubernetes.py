"""`mammoseg submit --to kubernetes`: the grid as a Kubernetes Indexed Job, and a report Job for after it.

Pod i of the Indexed Job gets JOB_COMPLETION_INDEX=i and runs `mammoseg ablate-task`, which takes run i of
the same plan the Slurm array and the serial `ablate` follow. Eviction or preemption sends SIGTERM: the
training loop saves at the next batch and exits with REQUEUE_EXIT; the pod failure policy ignores that
exit (and any disruption), so a new pod for the index resumes the same run folder on the shared volume.
The manifests are JSON, which kubectl reads as it reads YAML.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mammoseg.core.atomic import write_text
from mammoseg.core.errors import InputError
from mammoseg.workflows.ablate import Plan
from mammoseg.workflows.cluster import Resources
from mammoseg.workflows.tasks import JOB_NAME_ENV, REQUEUE_EXIT, GridOptions

KUBERNETES_FOLDER = "kubernetes"
JOB_FILE = "job.json"
REPORT_JOB_FILE = "report-job.json"
CONTAINER = "task"
NAME_LENGTH = 40
"""Job names are cut to this: an Indexed Job's pod hostnames are `<job>-<index>`, at most 63 characters."""
RETRIES_PER_INDEX = 3
"""Failures of one run's pod (other than stops and disruptions) before its index is given up."""


def job_name(experiment: str, suffix: str = "") -> str:
    """A DNS-1123 label from the experiment's name: lower case, letters, digits and '-'."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"mammoseg-{experiment}".lower())[:NAME_LENGTH].strip("-")
    return slug + suffix


def _memory(size: str) -> str:
    """Slurm's size (32G, 4000M, 4000 = MB) as a Kubernetes quantity (32Gi, 4000Mi)."""
    return f"{size[:-1]}{size[-1]}i" if size[-1].isalpha() else f"{size}Mi"


def _container(command: list[str], resources: Resources, env: list[dict[str, str]], gpus: int,
               cpus: int) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": str(cpus)}
    limits: dict[str, str] = {}
    if resources.mem:
        requests["memory"] = limits["memory"] = _memory(resources.mem)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    container: dict[str, Any] = {"name": CONTAINER, "image": resources.image, "command": command,
                                 "workingDir": resources.workdir, **({"env": env} if env else {}),
                                 "resources": {"requests": requests, **({"limits": limits} if limits else {})}}
    if resources.volume_claim:
        container["volumeMounts"] = [{"name": "work", "mountPath": resources.workdir}]
    return container


def _pod_spec(container: dict[str, Any], resources: Resources) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": resources.signal_seconds,
                            "containers": [container]}
    if resources.volume_claim:
        spec["volumes"] = [{"name": "work", "persistentVolumeClaim": {"claimName": resources.volume_claim}}]
    return spec


def indexed_job(plan: Plan, options: GridOptions, resources: Resources) -> dict[str, Any]:
    """The batch/v1 Job: one index per run of the plan, `concurrency` pods at a time."""
    name = job_name(plan.experiment)
    command = ["mammoseg", "ablate-task", *options.arguments()]
    container = _container(command, resources, [{"name": JOB_NAME_ENV, "value": name}], resources.gpus, resources.cpus)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "mammoseg", "mammoseg/experiment": name}},
        "spec": {
            "completionMode": "Indexed",
            "completions": len(plan.runs),
            "parallelism": min(resources.concurrency or len(plan.runs), len(plan.runs)),
            "backoffLimitPerIndex": RETRIES_PER_INDEX,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                     "values": [REQUEUE_EXIT]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {"metadata": {"labels": {"mammoseg/experiment": name}},
                         "spec": _pod_spec(container, resources)},
        },
    }


def report_job(plan: Plan, options: GridOptions, resources: Resources) -> dict[str, Any]:
    """The Job that writes the report once the Indexed Job has ended (apply it then: Kubernetes has no
    dependency between Jobs)."""
    name = job_name(plan.experiment, "-report")
    container = _container(["mammoseg", "ablate-report", *options.arguments()], resources, [], 0, 1)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "mammoseg"}},
            "spec": {"completions": 1, "backoffLimit": 0, "template": {"spec": _pod_spec(container, resources)}}}


def manifests(options: GridOptions, resources: Resources, *, write: bool = True) -> dict[Path, str]:
    """EXPERIMENT/kubernetes/job.json and report-job.json (written unless not `write`), path -> text."""
    if not resources.image:
        raise InputError(options.config, "Kubernetes needs a container image: set image in [cluster] or give --image")
    plan = options.plan()
    folder = plan.folder / KUBERNETES_FOLDER
    out = {folder / JOB_FILE: indexed_job(plan, options, resources),
           folder / REPORT_JOB_FILE: report_job(plan, options, resources)}
    texts = {path: json.dumps(doc, indent=2) + "\n" for path, doc in out.items()}
    if write:
        for path, text in texts.items():
            write_text(path, text)
    return texts

"""Definitions as code: a TOML project file applied to the database (``th2etl apply``) and
written from it (``th2etl export``). The format is in :mod:`th2etl.projects.file`, the plan
and its transaction in :mod:`th2etl.projects.plan`."""

from __future__ import annotations

from th2etl.projects.file import ProjectFile, render
from th2etl.projects.plan import Change, Plan, apply_plan, export_project, make_plan

__all__ = ["Change", "Plan", "ProjectFile", "apply_plan", "export_project", "make_plan", "render"]

"""`torchstarter new`: a ready project folder whose task code is the student's to edit."""

from torchstarter.scaffold.project import TEMPLATES, Project, create_project, project_name

__all__ = ["TEMPLATES", "Project", "create_project", "project_name"]

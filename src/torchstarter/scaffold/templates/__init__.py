"""The task packages `torchstarter new` copies into a project, one folder per template.

Each folder is a complete task (see torchstarter.tasks.base) written for a student to
read and edit. Its modules import each other relatively (`from .net import ...`), so the
copy works under whatever name the project gives it; the tests train every template.
"""

"""Hyper-parameter search: child experiment folders under a parent, driven by an Optuna study.

space.py reads search.json (or --grid), naming.py names the trial folders, folders.py
creates, claims and reads them, study.py opens the Optuna study, runner.py runs one
trial as a `train` child process (child.py is that process's entry point), and
scheduler.py hands trials to the parallel workers.
"""

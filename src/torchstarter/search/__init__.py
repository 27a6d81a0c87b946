"""Hyper-parameter search: child experiment folders under a parent, driven by an Optuna study.

space.py reads search.json (or --grid), naming.py names the trial folders, folders.py
creates, claims and reads them, study.py opens the Optuna study, runner.py runs one
trial as a `train` child process (started by module name: its entry point is
cli/search_trial.py), and scheduler.py hands trials to the parallel workers.
"""

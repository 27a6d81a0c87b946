"""Reports over finished and running experiments: the results table and the plots.

Nothing here imports matplotlib or torch at import time, so `train` and the CLI stay quick
to start; the plotting functions import matplotlib when they first draw.
"""

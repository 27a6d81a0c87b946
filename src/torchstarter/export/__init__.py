"""`torchstarter export`: a trained model as a file that runs without torchstarter, checked
against the eager model before it is kept."""
